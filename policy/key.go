package policy

import "strings"

// Key names a call site: a namespace (usually the dependency or service)
// and a name (usually the operation). Keys must be stable and of low
// cardinality: never put IDs, tenants or raw URLs in a key.
type Key struct {
	// Namespace groups keys, usually by dependency or service
	// ("payments"). It is empty for a key without one.
	Namespace string
	// Name names the call site within the namespace, usually the
	// operation ("Charge"). It may itself hold dots.
	Name string
}

// ParseKey splits s at its first dot: "payments.Charge" → {payments,
// Charge}; "db.Users.Query" → {db, Users.Query}. Without a dot the whole
// string is the Name.
func ParseKey(s string) Key {
	ns, name, ok := strings.Cut(s, ".")
	if !ok {
		return Key{Name: s}
	}
	return Key{Namespace: ns, Name: name}
}

// String returns "namespace.name", or just the name when there is no
// namespace (with a leading dot if the name itself holds one, so that
// ParseKey(k.String()) == k for every key ParseKey returns).
func (k Key) String() string {
	if k.Namespace == "" {
		if strings.Contains(k.Name, ".") {
			return "." + k.Name
		}
		return k.Name
	}
	return k.Namespace + "." + k.Name
}

// IsZero reports whether k is the empty key.
func (k Key) IsZero() bool { return k.Namespace == "" && k.Name == "" }
