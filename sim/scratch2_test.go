package sim

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestScratchSweep(t *testing.T) {
	f, err := ParseFaults(os.Getenv("SIMFAULTS"))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(os.Getenv("SIMSEEDS"))
	ev, _ := strconv.Atoi(os.Getenv("SIMEVENTS"))
	nodes, _ := strconv.Atoi(os.Getenv("SIMNODES"))
	cfg := Config{Seed: 1, Events: ev, Faults: f, Parallel: 2, Nodes: nodes}
	cfg.Defects, _ = ParseDefects(os.Getenv("SIMDEFECTS"))
	sum := Sweep(cfg, n)
	var b strings.Builder
	sum.WriteTable(&b)
	t.Log(b.String())
}
