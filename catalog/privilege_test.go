package catalog_test

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
)

func newService(t testing.TB) *catalog.Service {
	t.Helper()
	kr, err := catalog.NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := catalog.Open(context.Background(), catalog.Options{Store: memstore.New(), Keyring: kr, AdminVerifier: "x"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

// tokens splits a matrix line into words; "quoted strings" use Go syntax.
func tokens(t *testing.T, line string) []string {
	t.Helper()
	var out []string
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimSpace(line) {
		if line[0] == '"' {
			end := 1
			for end < len(line) && (line[end] != '"' || line[end-1] == '\\') {
				end++
			}
			s, err := strconv.Unquote(line[:end+1])
			if err != nil {
				t.Fatalf("bad quoted string in %q: %v", line, err)
			}
			out = append(out, "\x00"+s) // marks a quoted token
			line = line[end+1:]
			continue
		}
		i := strings.IndexAny(line, " \t")
		if i < 0 {
			i = len(line)
		}
		out = append(out, line[:i])
		line = line[i:]
	}
	return out
}

func securableType(t *testing.T, s string) catalog.SecurableType {
	t.Helper()
	switch s {
	case "metastore":
		return catalog.TypeMetastore
	case "catalog":
		return catalog.TypeCatalog
	case "schema":
		return catalog.TypeSchema
	case "connection":
		return catalog.TypeConnection
	case "model_service":
		return catalog.TypeModelService
	case "provider_service":
		return catalog.TypeProviderService
	}
	t.Fatalf("unknown securable type %q", s)
	return ""
}

func path(name string) []string {
	if name == "-" {
		return nil
	}
	return strings.Split(name, ".")
}

// TestPrivilegeMatrix runs testdata/privilege_matrix.txt against Check.
func TestPrivilegeMatrix(t *testing.T) {
	svc := newService(t)
	f, err := os.Open("testdata/privilege_matrix.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := t.Context()
	admin := catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}
	write := func(lineNo int, fn func(tx *catalog.Tx) error) {
		t.Helper()
		if _, err := svc.Write(ctx, admin, fn); err != nil {
			t.Fatalf("line %d: %v", lineNo, err)
		}
	}
	checks := 0
	sc := bufio.NewScanner(f)
	for lineNo := 1; sc.Scan(); lineNo++ {
		line := sc.Text()
		if i := strings.Index(line, "#"); i == 0 || strings.TrimSpace(line) == "" {
			continue
		}
		w := tokens(t, line)
		rest := func(i int) string { return strings.Join(w[i:], " ") }
		switch w[0] {
		case "user", "group", "sp":
			kind := map[string]catalog.PrincipalKind{"user": catalog.KindUser, "group": catalog.KindGroup, "sp": catalog.KindServicePrincipal}[w[0]]
			write(lineNo, func(tx *catalog.Tx) error { return tx.CreatePrincipal(kind, rest(1), nil, false) })
		case "member", "unmember":
			write(lineNo, func(tx *catalog.Tx) error {
				p, ok := tx.Model().PrincipalByName(rest(2))
				if !ok {
					t.Fatalf("line %d: no principal %s", lineNo, rest(2))
				}
				if w[0] == "member" {
					return tx.AddMember(w[1], p.Kind, rest(2))
				}
				return tx.RemoveMember(w[1], p.Kind, rest(2))
			})
		case "catalog":
			write(lineNo, func(tx *catalog.Tx) error { return tx.CreateCatalog(w[1], false, nil) })
		case "schema":
			write(lineNo, func(tx *catalog.Tx) error { return tx.CreateSchema(path(w[1]), false, nil) })
		case "connection":
			write(lineNo, func(tx *catalog.Tx) error {
				return tx.CreateConnection(path(w[1]), "MCP", [][2]string{{"url", "https://example.com/mcp"}}, false, nil)
			})
		case "provider_service":
			write(lineNo, func(tx *catalog.Tx) error {
				return tx.CreateProviderService(path(w[1]), [][2]string{{"provider", "openai"}, {"api_key", "sk-test"}}, false, nil)
			})
		case "model_service":
			write(lineNo, func(tx *catalog.Tx) error {
				return tx.CreateModelService(path(w[1]), [][2]string{{"destinations", w[2] + "/gpt-4.1"}}, false, nil)
			})
		case "grant", "revoke":
			priv, err := catalog.ParsePrivilege(w[1])
			if err != nil {
				t.Fatalf("line %d: %v", lineNo, err)
			}
			typ := securableType(t, w[2])
			write(lineNo, func(tx *catalog.Tx) error {
				if w[0] == "grant" {
					return tx.Grant([]catalog.Privilege{priv}, typ, path(w[3]), []string{rest(4)})
				}
				return tx.Revoke([]catalog.Privilege{priv}, typ, path(w[3]), []string{rest(4)})
			})
		case "owner":
			write(lineNo, func(tx *catalog.Tx) error { return tx.SetOwner(securableType(t, w[1]), path(w[2]), rest(3)) })
		case "drop":
			write(lineNo, func(tx *catalog.Tx) error { return tx.Drop(securableType(t, w[1]), path(w[2]), false, true) })
		case "dropprincipal":
			write(lineNo, func(tx *catalog.Tx) error {
				p, _ := tx.Model().PrincipalByName(rest(1))
				return tx.DropPrincipal(p.Kind, rest(1), false)
			})
		case "check", "checkerr":
			checks++
			priv, err := catalog.ParsePrivilege(w[2])
			if err != nil {
				t.Fatalf("line %d: %v", lineNo, err)
			}
			typ := securableType(t, w[3])
			var want, reason string
			if w[0] == "check" {
				want = w[5]
				if len(w) > 6 {
					reason = strings.TrimPrefix(w[6], "\x00")
				}
			} else {
				want = "deny"
			}
			t.Run(strconv.Itoa(lineNo)+"_"+w[1]+"_"+w[2]+"_"+w[4], func(t *testing.T) {
				svc.Read(func(m *catalog.Model) {
					p, okP := m.PrincipalByName(w[1])
					s, errS := m.Lookup(typ, path(w[4]))
					if w[0] == "checkerr" {
						if okP && errS == nil {
							t.Fatalf("line %d: expected an unknown principal or securable", lineNo)
						}
						var d catalog.Decision
						if okP {
							d = m.Check(p.ID, priv, 0)
						} else if errS == nil {
							d = m.Check(0, priv, s.ID)
						}
						if d.Allowed {
							t.Fatalf("line %d: unknown principal/securable allowed", lineNo)
						}
						return
					}
					if !okP || errS != nil {
						t.Fatalf("line %d: lookup failed: %v %v", lineNo, okP, errS)
					}
					d := m.Check(p.ID, priv, s.ID)
					got := map[bool]string{true: "allow", false: "deny"}[d.Allowed]
					if got != want {
						t.Fatalf("line %d: %s: got %s, want %s (reason: %s)", lineNo, line, got, want, d.Reason())
					}
					if reason != "" && !strings.Contains(d.Reason(), reason) {
						t.Fatalf("line %d: reason %q does not contain %q", lineNo, d.Reason(), reason)
					}
				})
			})
		default:
			t.Fatalf("line %d: unknown directive %q", lineNo, w[0])
		}
	}
	if checks < 30 {
		t.Fatalf("only %d checks ran", checks)
	}
}

// TestChecksSeeTheStatementsOwnChanges: the privilege checks of a statement
// being planned see its own earlier changes, before they are committed: a
// catalog created in the statement is owned by its creator (so a schema in
// it may be created), and ownership given away in the statement is gone
// for the rest of it. A failed statement leaves nothing behind.
func TestChecksSeeTheStatementsOwnChanges(t *testing.T) {
	svc := newService(t)
	ctx := t.Context()
	asAdmin := catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}
	if _, err := svc.Write(ctx, asAdmin, func(tx *catalog.Tx) error {
		for _, u := range []string{"bob", "alice"} {
			if err := tx.CreatePrincipal(catalog.KindUser, u, nil, false); err != nil {
				return err
			}
		}
		return tx.Grant([]catalog.Privilege{catalog.PrivCreateCatalog}, catalog.TypeMetastore, nil, []string{"bob"})
	}); err != nil {
		t.Fatal(err)
	}
	asBob := catalog.WriteRequest{Caller: catalog.Caller{Principal: "bob"}, Action: "TEST"}
	_, err := svc.Write(ctx, asBob, func(tx *catalog.Tx) error {
		if err := tx.CreateCatalog("c", false, nil); err != nil {
			return err
		}
		if err := tx.CreateSchema([]string{"c", "s"}, false, nil); err != nil {
			return err // needs ownership of the uncommitted catalog
		}
		if err := tx.SetOwner(catalog.TypeCatalog, []string{"c"}, "alice"); err != nil {
			return err
		}
		if err := tx.CreateSchema([]string{"c", "s2"}, false, nil); !catalog.IsCode(err, catalog.CodePermissionDenied) {
			t.Errorf("CREATE SCHEMA after giving the catalog away: %v, want permission denied", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	svc.Read(func(m *catalog.Model) {
		c, err := m.Lookup(catalog.TypeCatalog, []string{"c"})
		if err != nil {
			t.Fatal(err)
		}
		alice, _ := m.PrincipalByName("alice")
		bob, _ := m.PrincipalByName("bob")
		if !m.Holds(alice.ID, catalog.PrivCreateSchema, c.ID) || m.Holds(bob.ID, catalog.PrivCreateSchema, c.ID) {
			t.Errorf("after the commit: alice %v, bob %v", m.Holds(alice.ID, catalog.PrivCreateSchema, c.ID), m.Holds(bob.ID, catalog.PrivCreateSchema, c.ID))
		}
		if _, err := m.Lookup(catalog.TypeSchema, []string{"c", "s"}); err != nil {
			t.Error(err)
		}
	})
	// A failing statement: its grant was seen by its own later check, and
	// is gone afterwards.
	_, err = svc.Write(ctx, asAdmin, func(tx *catalog.Tx) error {
		if err := tx.Grant([]catalog.Privilege{catalog.PrivUseCatalog, catalog.PrivCreateSchema}, catalog.TypeCatalog, []string{"c"}, []string{"bob"}); err != nil {
			return err
		}
		m := tx.Model()
		bob, _ := m.PrincipalByName("bob")
		c, _ := m.Lookup(catalog.TypeCatalog, []string{"c"})
		if !m.Holds(bob.ID, catalog.PrivCreateSchema, c.ID) {
			t.Error("the statement's own grant is not seen by its checks")
		}
		return catalog.Errorf(catalog.CodeInvalidArgument, "abandon")
	})
	if !catalog.IsCode(err, catalog.CodeInvalidArgument) {
		t.Fatalf("abandoned statement: %v", err)
	}
	svc.Read(func(m *catalog.Model) {
		bob, _ := m.PrincipalByName("bob")
		c, _ := m.Lookup(catalog.TypeCatalog, []string{"c"})
		if m.Holds(bob.ID, catalog.PrivCreateSchema, c.ID) || m.Check(bob.ID, catalog.PrivCreateSchema, c.ID).Allowed {
			t.Error("an abandoned statement's grant survived")
		}
	})
}
