// Command mandate is Mandate's single binary.
//
//	mandate serve    catalog, SQL front end (PostgreSQL wire) and HTTP API in one process
//	mandate version  print the version
//
// Every flag of serve can also be set with a MANDATE_* environment variable
// (--data-dir = MANDATE_DATA_DIR, ...); flags win over the environment.
package main
