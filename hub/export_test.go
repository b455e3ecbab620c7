package hub

// AppendItems is appendItems, for the external tests.
var AppendItems = appendItems
