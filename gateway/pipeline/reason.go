package pipeline

import "strings"

// BriefReason is what a caller is told about a denial: what is missing,
// without how the rest was granted. An enforce reason without explanation
// names each principal's part, subject then actor ("subject "alice" lacks
// USE CONNECTION on CONNECTION system.ai.x", or, for a principal that
// holds everything, "... allowed: USE CATALOG on CATALOG system: granted
// to GROUP "data-analysts" via ..."); the allowed parts, which reveal
// group memberships and grants, are dropped. The audit row and EXPLAIN
// ACCESS keep the full reason.
func BriefReason(reason string) string {
	parts := []string{reason}
	if i := strings.LastIndex(reason, "; actor "); i >= 0 {
		parts = []string{reason[:i], reason[i+2:]}
	}
	var keep []string
	for _, p := range parts {
		if strings.Contains(p, " allowed: ") || strings.Contains(p, " is a metastore admin") {
			continue
		}
		keep = append(keep, p)
	}
	if len(keep) == 0 {
		return "denied"
	}
	return strings.Join(keep, "; ")
}
