package crdt

import (
	"fmt"
	"reflect"
	"strings"
)

// StateDiff names the fields in which two states differ, with the entries
// that differ for map fields (for diagnostics: a test's or the
// simulator's report). Empty when the states are equal.
func StateDiff(a, b *State) string {
	if a == nil || b == nil {
		return fmt.Sprintf("one state is nil (%v, %v)", a == nil, b == nil)
	}
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []string
	for i := range va.NumField() {
		f := va.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		x, y := va.Field(i), vb.Field(i)
		if reflect.DeepEqual(x.Interface(), y.Interface()) {
			continue
		}
		if x.Kind() != reflect.Map {
			out = append(out, fmt.Sprintf("%s: %+v vs %+v", f.Name, x.Interface(), y.Interface()))
			continue
		}
		var ks []string
		for _, k := range x.MapKeys() {
			ya := y.MapIndex(k)
			if !ya.IsValid() {
				ks = append(ks, fmt.Sprintf("%v only in the first (%+v)", k, deref(x.MapIndex(k))))
			} else if !reflect.DeepEqual(x.MapIndex(k).Interface(), ya.Interface()) {
				ks = append(ks, fmt.Sprintf("%v: %+v vs %+v", k, deref(x.MapIndex(k)), deref(ya)))
			}
		}
		for _, k := range y.MapKeys() {
			if !x.MapIndex(k).IsValid() {
				ks = append(ks, fmt.Sprintf("%v only in the second (%+v)", k, deref(y.MapIndex(k))))
			}
		}
		if len(ks) > 5 {
			ks = append(ks[:5], fmt.Sprintf("… %d more", len(ks)-5))
		}
		out = append(out, fmt.Sprintf("%s: %s", f.Name, strings.Join(ks, "; ")))
	}
	return strings.Join(out, " | ")
}

func deref(v reflect.Value) any {
	if v.Kind() == reflect.Pointer && !v.IsNil() {
		return v.Elem().Interface()
	}
	return v.Interface()
}
