package httpapi

import (
	"net/http"
)

// twinhub's routes for the consumer groups of the Event Hubs-compatible
// endpoint (IoT Hub manages them through Azure Resource Manager):
//
//	GET    /twinhub/eventhub/consumergroups          list ($Default first)
//	PUT    /twinhub/eventhub/consumergroups/{name}   create
//	DELETE /twinhub/eventhub/consumergroups/{name}   delete

func (a *API) listConsumerGroups(r *http.Request) (int, any, error) {
	groups, err := a.hub.ConsumerGroups(r.Context())
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, groups, nil
}

func (a *API) createConsumerGroup(r *http.Request) (int, any, error) {
	g, err := a.hub.CreateConsumerGroup(r.Context(), r.PathValue("name"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, g, nil
}

func (a *API) deleteConsumerGroup(r *http.Request) (int, any, error) {
	if err := a.hub.DeleteConsumerGroup(r.Context(), r.PathValue("name")); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}
