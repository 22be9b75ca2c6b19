package maintenance

import (
	"fmt"

	"aura/crdt"
)

// Pending returns the writes buffered behind this device's writer fence,
// in the order they will commit: acknowledged, durable, not yet facts.
// Drivers show them so a device reads its own writes while the fence is up
// (DESIGN §5: buffered, not lost, not committed).
func (r *Replica) Pending() ([]crdt.Body, error) {
	var out []crdt.Body
	err := r.cfg.Meta.Scan(metaBuffer, func(k string, v []byte) error {
		var w bufferedWrite
		if err := crdt.Unmarshal(v, &w); err != nil {
			return fmt.Errorf("buffered write %s: %w", k, err)
		}
		b, err := crdt.DecodeBodyOf(w.Kind, w.Body)
		if err != nil {
			return fmt.Errorf("buffered write %s: %w", k, err)
		}
		out = append(out, b)
		return nil
	})
	return out, err
}
