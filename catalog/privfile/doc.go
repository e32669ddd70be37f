// Package privfile writes private files (mode 0600) so that a crash never
// leaves a partial one: the data goes to a temporary file in the same
// directory, is fsynced, then renamed (Write) or hard-linked (Create) into
// place, and the directory is fsynced. Keys, tokens, passwords and other
// secrets of every Mandate process are written through it.
//
// It sits under catalog, the bottom layer, so that every package may use it.
package privfile
