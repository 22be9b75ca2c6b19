package node

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the node's Prometheus series (one registry per node, so
// several nodes can run in one process).
type metrics struct {
	writes, ingested, rejected, connects prometheus.Counter
	events                               *prometheus.CounterVec
	facts, bytes, peers, members, epoch  prometheus.Gauge
	diskFree, diskFull                   prometheus.Gauge
}

func newMetrics(n *Node) *metrics {
	r := n.reg
	m := &metrics{
		writes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "aura_local_writes_total", Help: "Facts written by this device."}),
		ingested: prometheus.NewCounter(prometheus.CounterOpts{Name: "aura_ingested_facts_total", Help: "Facts from peers stored."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "aura_rejected_facts_total", Help: "Facts from peers refused (signature, guard, account)."}),
		connects: prometheus.NewCounter(prometheus.CounterOpts{Name: "aura_device_connections_total", Help: "Connections with devices of the account."}),
		events:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "aura_maintenance_events_total", Help: "Maintenance events by kind."}, []string{"kind"}),
		facts:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "aura_journal_facts", Help: "Facts held in the journal."}),
		bytes:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "aura_journal_bytes", Help: "Encoded bytes of the facts held."}),
		peers:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "aura_connected_devices", Help: "Connected devices of the account."}),
		members:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "aura_account_devices", Help: "Devices in the account."}),
		epoch:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "aura_identity_epoch", Help: "The account's identity epoch."}),
		diskFree: prometheus.NewGauge(prometheus.GaugeOpts{Name: "aura_disk_free_bytes", Help: "Free bytes of the filesystem under HOME/data."}),
		diskFull: prometheus.NewGauge(prometheus.GaugeOpts{Name: "aura_disk_full", Help: "1 while writes are refused for lack of free space."}),
	}
	r.MustRegister(m.writes, m.ingested, m.rejected, m.connects, m.events, m.facts, m.bytes, m.peers, m.members, m.epoch, m.diskFree, m.diskFull)
	r.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	r.MustRegister(gossipCollector{n})
	return m
}

// update refreshes the gauges (from the tick loop).
func (m *metrics) update(n *Node) {
	st := n.store.Stats()
	m.facts.Set(float64(st.Facts))
	m.bytes.Set(float64(st.Bytes))
	m.peers.Set(float64(len(n.ConnectedDevices())))
	m.members.Set(float64(len(*n.gater.members.Load())))
	if d := n.space.info(); d != nil {
		m.diskFree.Set(float64(d.FreeBytes))
		m.diskFull.Set(map[bool]float64{false: 0, true: 1}[d.Full])
	}
	n.mu.Lock()
	m.epoch.Set(float64(n.rep.State().Epoch))
	n.mu.Unlock()
}

// gossipCollector exports the gossip package's counters.
type gossipCollector struct{ n *Node }

var (
	descGossip = prometheus.NewDesc("aura_gossip_total", "Gossip and sync counters by name.", []string{"counter"}, nil)
	descReject = prometheus.NewDesc("aura_gossip_rejected_total", "Gossip messages or facts refused, by reason.", []string{"reason"}, nil)
)

func (c gossipCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descGossip; ch <- descReject }

func (c gossipCollector) Collect(ch chan<- prometheus.Metric) {
	g := c.n.gossip()
	if g == nil {
		return
	}
	s := g.Stats()
	for name, v := range map[string]uint64{
		"gossip_facts_in": s.GossipFactsIn, "gossip_duplicates": s.GossipDuplicates, "messages_validated": s.MessagesValidated,
		"batches_published": s.BatchesPublished, "facts_published": s.FactsPublished, "publish_errors": s.PublishErrors,
		"publish_dropped": s.PublishDropped, "pubsub_dropped": s.PubSubDropped, "sync_sessions": s.SyncSessions,
		"sync_errors": s.SyncErrors, "sync_facts_in": s.SyncFactsIn, "sync_facts_out": s.SyncFactsOut,
		"sync_bytes_in": s.SyncBytesIn, "sync_bytes_out": s.SyncBytesOut, "restores_needed": s.RestoresNeeded,
	} {
		ch <- prometheus.MustNewConstMetric(descGossip, prometheus.CounterValue, float64(v), name)
	}
	for r, v := range s.Rejected {
		ch <- prometheus.MustNewConstMetric(descReject, prometheus.CounterValue, float64(v), r)
	}
}

func (n *Node) serveMetrics() error {
	ln := n.metricsLn // bound early by start, so an address in use fails first
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	n.metricsLn = ln
	n.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Warn("metrics server", "err", err)
		}
	}()
	n.log.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return nil
}

// MetricsAddr is the address metrics are served on ("" when off).
func (n *Node) MetricsAddr() string {
	if n.metricsLn == nil {
		return ""
	}
	return n.metricsLn.Addr().String()
}

func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	var lvl slog.Level
	switch strings.ToLower(c.Level) {
	case "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		lvl = slog.LevelInfo
	}
	o := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}
