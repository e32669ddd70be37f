package catalogtest

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/mandatehq/mandate/catalog"
)

// Spec sizes a generated catalog.
type Spec struct {
	Users       int // users, each in 2 groups of the lowest level
	Groups      int // groups, in Depth levels; each group is in one group of the next level
	Depth       int
	Catalogs    int
	Schemas     int // per catalog
	Connections int // per schema
	Grants      int // USE_CONNECTION/USE_SCHEMA/USE_CATALOG grants to random users and groups
	Seed        uint64
}

// Large is the catalog of the performance targets.
var Large = Spec{Users: 10000, Groups: 1000, Depth: 5, Catalogs: 10, Schemas: 10, Connections: 100, Grants: 100000, Seed: 1}

// Built describes what Build created.
type Built struct {
	Users       []string
	Groups      []string
	Connections [][]string // full paths
	Grants      int
}

// Build creates the catalog described by s as the admin, in a few large
// catalog transactions.
func Build(ctx context.Context, svc *catalog.Service, s Spec) (*Built, error) {
	r := rand.New(rand.NewPCG(s.Seed, s.Seed+1))
	b := &Built{}
	req := catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser, Statement: "-- catalogtest.Build"}, Action: "BUILD"}
	write := func(fn func(tx *catalog.Tx) error) error {
		_, err := svc.Write(ctx, req, fn)
		return err
	}
	perLevel := s.Groups / s.Depth
	err := write(func(tx *catalog.Tx) error {
		for i := 0; i < s.Groups; i++ {
			name := fmt.Sprintf("group-%d-%d", i/perLevel, i%perLevel)
			b.Groups = append(b.Groups, name)
			if err := tx.CreatePrincipal(catalog.KindGroup, name, nil, false); err != nil {
				return err
			}
		}
		for i := 0; i < s.Users; i++ {
			name := fmt.Sprintf("user%d@example.com", i)
			b.Users = append(b.Users, name)
			if err := tx.CreatePrincipal(catalog.KindUser, name, nil, false); err != nil {
				return err
			}
		}
		// level k group j is a member of level k+1 group j (a chain per column) and of one random group.
		for lvl := 0; lvl+1 < s.Depth; lvl++ {
			for j := 0; j < perLevel; j++ {
				child := fmt.Sprintf("group-%d-%d", lvl, j)
				if err := tx.AddMember(fmt.Sprintf("group-%d-%d", lvl+1, j), catalog.KindGroup, child); err != nil {
					return err
				}
				if err := tx.AddMember(fmt.Sprintf("group-%d-%d", lvl+1, r.IntN(perLevel)), catalog.KindGroup, child); err != nil {
					return err
				}
			}
		}
		for i, u := range b.Users {
			for k := 0; k < 2; k++ {
				if err := tx.AddMember(fmt.Sprintf("group-0-%d", (i*7+k*13)%perLevel), catalog.KindUser, u); err != nil {
					return err
				}
			}
		}
		for c := 0; c < s.Catalogs; c++ {
			cat := fmt.Sprintf("cat%d", c)
			if err := tx.CreateCatalog(cat, false, nil); err != nil {
				return err
			}
			for sc := 0; sc < s.Schemas; sc++ {
				sch := fmt.Sprintf("schema%d", sc)
				if err := tx.CreateSchema([]string{cat, sch}, false, nil); err != nil {
					return err
				}
				for x := 0; x < s.Connections; x++ {
					p := []string{cat, sch, fmt.Sprintf("conn%d", x)}
					b.Connections = append(b.Connections, p)
					if err := tx.CreateConnection(p, "MCP", [][2]string{{"url", "https://mcp.example.com/" + p[2]}}, false, nil); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Grants in chunks of 20,000 per transaction.
	for done := 0; done < s.Grants; {
		n := min(20000, s.Grants-done)
		err := write(func(tx *catalog.Tx) error {
			for i := 0; i < n; i++ {
				var who string
				if r.IntN(2) == 0 {
					who = b.Users[r.IntN(len(b.Users))]
				} else {
					who = b.Groups[r.IntN(len(b.Groups))]
				}
				conn := b.Connections[r.IntN(len(b.Connections))]
				var err error
				switch r.IntN(10) {
				case 0:
					err = tx.Grant([]catalog.Privilege{catalog.PrivUseCatalog}, catalog.TypeCatalog, conn[:1], []string{who})
				case 1:
					err = tx.Grant([]catalog.Privilege{catalog.PrivUseSchema}, catalog.TypeSchema, conn[:2], []string{who})
				default:
					err = tx.Grant([]catalog.Privilege{catalog.PrivUseConnection}, catalog.TypeConnection, conn, []string{who})
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		done += n
	}
	b.Grants = s.Grants
	return b, nil
}
