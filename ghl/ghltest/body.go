package ghltest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
)

// maxBody bounds request bodies; GHL's payloads are small.
const maxBody = 1 << 20

// decodeBody reads a JSON object into v (a pointer to a struct of pointer
// fields, so absent and null stay nil) and answers the error itself when it
// cannot. Only the keys in allowed may appear: like GHL's validation, an
// unknown property is a 422 "property X should not exist".
func decodeBody(w http.ResponseWriter, r *http.Request, v any, allowed []string) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "Invalid request body")
		return false
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		writeError(w, http.StatusBadRequest, "Invalid JSON body")
		return false
	}
	var msgs []string
	for k := range raw {
		if !slices.Contains(allowed, k) {
			msgs = append(msgs, "property "+k+" should not exist")
		}
	}
	if len(msgs) > 0 {
		slices.Sort(msgs)
		writeValidation(w, msgs...)
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			writeValidation(w, te.Field+" must be "+jsonKind(te.Type))
			return false
		}
		writeError(w, http.StatusBadRequest, "Invalid JSON body")
		return false
	}
	return true
}

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean value"
	case reflect.Slice:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	default:
		return "a " + t.Kind().String()
	}
}

// jsonKeys lists the JSON names of a struct type's fields, less except.
func jsonKeys(t reflect.Type, except ...string) []string {
	var keys []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" && !slices.Contains(except, name) {
			keys = append(keys, name)
		}
	}
	return keys
}

// str returns *p, "" for nil.
func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
