package twinhub

// QueryPage is one page of a query's results.
type QueryPage struct {
	// Items are whole twins (SELECT *) or rows. They are read-only: parts
	// of a twin may be shared between its items.
	Items []map[string]any
	// ItemType is what IoT Hub puts in x-ms-item-type: "Twin" for whole
	// twins, "DeviceJob" for jobs, "Raw" for projections and aggregates.
	ItemType string
	// Continuation asks for the next page; empty on the last one.
	Continuation string
}
