package ghl

// endpointScopes is the OAuth scope each API endpoint of the client needs,
// as GHL's scope table (docs/oauth/Scopes.md) and the OpenAPI files'
// security sections give it, keyed by the endpoint names of
// Config.OnResponse. The token endpoint takes no scope. A new endpoint
// belongs here, so that a 401 for its scope says which scope to add.
var endpointScopes = map[string]string{
	"oauth.locationToken":         "oauth.write",
	"oauth.installedLocations":    "oauth.readonly",
	"contacts.upsert":             "contacts.write",
	"contacts.create":             "contacts.write",
	"contacts.update":             "contacts.write",
	"contacts.delete":             "contacts.write",
	"contacts.addTags":            "contacts.write",
	"contacts.removeTags":         "contacts.write",
	"contacts.get":                "contacts.readonly",
	"contacts.search":             "contacts.readonly",
	"contacts.searchDuplicate":    "contacts.readonly",
	"contacts.appointments":       "contacts.readonly",
	"calendars.list":              "calendars.readonly",
	"calendars.get":               "calendars.readonly",
	"calendars.events":            "calendars/events.readonly",
	"calendars.getAppointment":    "calendars/events.readonly",
	"calendars.createAppointment": "calendars/events.write",
	"calendars.updateAppointment": "calendars/events.write",
	"calendars.deleteEvent":       "calendars/events.write",
	"calendars.notes":             "calendars/events.readonly",
	"calendars.createNote":        "calendars/events.write",
	"calendars.updateNote":        "calendars/events.write",
	"calendars.deleteNote":        "calendars/events.write",
	"locations.get":               "locations.readonly",
	"locations.customFields":      "locations/customFields.readonly",
	"locations.createCustomField": "locations/customFields.write",
	"users.list":                  "users.readonly",
}

// Scope returns the scope GHL requires for an endpoint of the client (a
// name as Config.OnResponse gives it), "" for one that needs none or is
// unknown.
func Scope(endpoint string) string { return endpointScopes[endpoint] }
