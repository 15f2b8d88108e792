package gateway

import (
	"context"
	"encoding/json"
	"net/http"
)

// handleModels answers GET /v1/models with the models the fleet's workers
// serve, asked of the workers over NATS: each worker's default model and
// its allow-list. A worker with an empty allow-list serves any model, but
// only its default can be listed.
func (g *Gateway) handleModels(ctx context.Context, rec *recorder, r *http.Request) {
	if _, ok := g.authenticate(rec, r); !ok {
		return
	}
	list := modelList{Object: "list", Data: []model{}}
	for _, id := range g.fleet.models(ctx) {
		list.Data = append(list.Data, model{ID: id, Object: "model", OwnedBy: "chatfleet"})
	}
	rec.Header().Set("Content-Type", "application/json")
	rec.WriteHeader(http.StatusOK)
	rec.firstByte()
	_ = json.NewEncoder(rec).Encode(list)
}
