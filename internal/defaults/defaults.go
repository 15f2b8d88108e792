// Package defaults fills the zero fields of chatfleet's Config structs.
package defaults

// Set sets *p to def when *p is its type's zero value: how every Config's
// WithDefaults reads "unset".
func Set[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
