package app

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/ghlsync/ghlsync/internal/config"
	"github.com/ghlsync/ghlsync/store"
)

// SettingKeyNames are the names of the settings, in the order listed.
func SettingKeyNames() []string {
	var names []string
	for _, k := range store.SettingKeys {
		names = append(names, k.Name)
	}
	return names
}

// CheckSetting refuses, as a *UsageError, a setting and value that
// `settings set` could not store: an unknown key, or a value it refuses
// (an unknown field name, a title template that does not parse). It
// checks against the defaults, before anything is opened; SetSetting
// checks again against the location's settings.
func CheckSetting(loc, key, value string) error {
	if err := checkLocation(loc); err != nil {
		return err
	}
	k, err := store.LookupSettingKey(key)
	if err != nil {
		return Usage(err)
	}
	ls := store.DefaultSettings("check")
	if err := k.Set(&ls, value); err != nil {
		return Usage(err)
	}
	return nil
}

// checkLocation refuses, as a *UsageError, a location id no location
// can have.
func checkLocation(loc string) error {
	if loc == "" {
		return Usagef("the location id is empty")
	}
	if err := store.CheckID(loc); err != nil {
		return Usagef("location %q: %v", loc, err)
	}
	return nil
}

// CheckLocation is checkLocation, for `settings get` before anything is
// opened.
func CheckLocation(loc string) error { return checkLocation(loc) }

// ListSettings is `scheduler settings list`: every location's settings,
// one line each, key=value.
func ListSettings(ctx context.Context, cfg *config.Config, stdout io.Writer) error {
	st, err := openSchedules(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	all, err := st.AllSettings(ctx)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprint(w, "LOCATION")
	for _, k := range store.SettingKeys {
		fmt.Fprintf(w, "\t%s", k.Name)
	}
	fmt.Fprintln(w)
	for _, ls := range all {
		fmt.Fprint(w, ls.LocationID)
		for _, k := range store.SettingKeys {
			v := k.Get(ls)
			if v == "" {
				v = "-"
			}
			fmt.Fprintf(w, "\t%s", v)
		}
		fmt.Fprintln(w)
	}
	return w.Flush()
}

// GetSettings is `scheduler settings get LOCATION`: the location's
// settings, one key=value line each (defaults for a location without a
// row).
func GetSettings(ctx context.Context, cfg *config.Config, loc string, stdout io.Writer) error {
	if err := checkLocation(loc); err != nil {
		return err
	}
	st, err := openSchedules(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	ls, err := st.Settings(ctx, loc)
	if err != nil {
		return err
	}
	for _, k := range store.SettingKeys {
		fmt.Fprintf(stdout, "%s=%s\n", k.Name, k.Get(ls))
	}
	return nil
}

// SetSetting is `scheduler settings set LOCATION KEY VALUE`: it changes
// one setting of the location and prints it as get does. A value refused
// is a *UsageError and changes nothing. The next sync of the location
// uses it; a change of fields or title_template sends the location's
// records again, as what is sent changed.
func SetSetting(ctx context.Context, cfg *config.Config, loc, key, value string, stdout io.Writer) error {
	if err := checkLocation(loc); err != nil {
		return err
	}
	k, err := store.LookupSettingKey(key)
	if err != nil {
		return Usage(err)
	}
	st, err := openSchedules(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	ls, err := st.Settings(ctx, loc)
	if err != nil {
		return err
	}
	if err := k.Set(&ls, value); err != nil {
		return Usage(err)
	}
	if err := st.SaveSettings(ctx, ls); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s=%s\n", k.Name, k.Get(ls))
	return nil
}
