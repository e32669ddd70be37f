// Package catalogtest builds catalogs for tests and benchmarks: the large
// catalog of the performance targets (10,000 users, 1,000 groups nested five
// deep, 100,000 grants) through the catalog's own write path.
package catalogtest
