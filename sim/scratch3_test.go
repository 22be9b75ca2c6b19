package sim

import (
	"os"
	"testing"
)

func TestScratchLM(t *testing.T) {
	cfg := small(t, "churn,crash=0.03", 1)
	cfg.Defects = Defects{LoseMetaOnCrash: true}
	w, _ := os.Create("/tmp/t5.txt")
	defer w.Close()
	cfg.TraceWriter = w
	r, _ := Run(cfg)
	t.Log(r.Report())
}
