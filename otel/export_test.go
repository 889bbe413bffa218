package rotel

// CachedForTest reports how many entries o caches.
func CachedForTest(o *Observer) int64 { return o.cached.Load() }

// MaxCachedForTest is the bound on them.
const MaxCachedForTest = maxCached
