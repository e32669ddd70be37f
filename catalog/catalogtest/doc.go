// Package catalogtest builds catalogs for tests and benchmarks: the large
// catalog of the performance targets (10,000 users, 1,000 groups nested five
// deep, 100,000 grants) through the catalog's own write path — and the
// property tests' random catalogs (Random, Rand), the naive reference
// evaluator they are held to (Reference) and their seeded driver
// (Property), which catalog's and enforce's property tests share.
package catalogtest
