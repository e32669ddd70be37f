package llm

import (
	"net/http"
	"time"
)

// ModelInfo is one model service a caller may use, for GET /v1/models.
type ModelInfo struct {
	ID          string // the name clients put in "model"
	DisplayName string // Anthropic's display_name (ID if empty)
	OwnedBy     string // OpenAI's owned_by ("mandate" if empty)
	Created     time.Time
}

// ClientFormat is the format to answer r in before its body is parsed
// (errors of authentication, unknown endpoints): the endpoint's format,
// and for GET /v1/models Anthropic's when the client sent
// anthropic-version (the Anthropic SDKs always do).
func ClientFormat(r *http.Request) Format {
	e, ok := EndpointFor(r.URL.Path)
	if ok && e != Models {
		return e.Format()
	}
	if r.Header.Get("Anthropic-Version") != "" {
		return FormatAnthropic
	}
	return FormatOpenAI
}

// WriteModels answers GET /v1/models with models in r's client format
// (OpenAI's list object, or Anthropic's page with has_more false).
func WriteModels(w http.ResponseWriter, r *http.Request, models []ModelInfo) {
	writeJSON(w, http.StatusOK, ModelsBody(ClientFormat(r), models))
}

// ModelsBody is the answer to GET /v1/models in format f (see
// WriteModels).
func ModelsBody(f Format, models []ModelInfo) []byte {
	if f == FormatAnthropic {
		type anModel struct {
			Type        string `json:"type"`
			ID          string `json:"id"`
			DisplayName string `json:"display_name"`
			CreatedAt   string `json:"created_at"`
		}
		page := struct {
			Data    []anModel `json:"data"`
			HasMore bool      `json:"has_more"`
			FirstID *string   `json:"first_id"`
			LastID  *string   `json:"last_id"`
		}{Data: make([]anModel, 0, len(models))}
		for _, m := range models {
			dn := m.DisplayName
			if dn == "" {
				dn = m.ID
			}
			page.Data = append(page.Data, anModel{Type: "model", ID: m.ID, DisplayName: dn, CreatedAt: m.Created.UTC().Format(time.RFC3339)})
		}
		if n := len(models); n > 0 {
			page.FirstID, page.LastID = &models[0].ID, &models[n-1].ID
		}
		return marshal(page)
	}
	type oaModel struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string    `json:"object"`
		Data   []oaModel `json:"data"`
	}{Object: "list", Data: make([]oaModel, 0, len(models))}
	for _, m := range models {
		ob := m.OwnedBy
		if ob == "" {
			ob = "mandate"
		}
		list.Data = append(list.Data, oaModel{ID: m.ID, Object: "model", Created: m.Created.Unix(), OwnedBy: ob})
	}
	return marshal(list)
}
