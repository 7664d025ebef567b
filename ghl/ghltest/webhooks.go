package ghltest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"
)

// The fake's data webhooks: once SetWebhooks names a target, every change
// of a contact or an appointment, through the API or through the test
// hooks that play GHL's users (StaffEditContact, BookAppointment, …),
// sends GHL's webhook of it (docs/webhook events/*.md in
// GoHighLevel/highlevel-api-docs), signed in x-ghl-signature (Ed25519 over
// the raw body) and carrying a webhookId and a timestamp
// (docs/oauth/WebhookAuthentication.md). Delivery is asynchronous, after
// the change's answer, in no set order, and a webhook that is not
// answered 2xx is tried again with a growing pause, as GHL does. Seeding
// (AddContact) and losses played behind the app's back (DeleteContact)
// send none.

// WebhookOptions configures the fake's data webhooks.
type WebhookOptions struct {
	// URL receives the webhooks (POST); empty sends none.
	URL string
	// Key signs them.
	Key ed25519.PrivateKey
	// Attempts is how many times a webhook is sent before it is dropped;
	// default 6.
	Attempts int
	// Backoff is the pause before the first retry, doubled for each next
	// one; default 100ms.
	Backoff time.Duration
	// Workers is how many webhooks are in flight at once; default 8.
	Workers int
	// Client sends them; default a client with a 10 s timeout.
	Client *http.Client
}

// webhookSender queues and delivers the fake's webhooks.
type webhookSender struct {
	mu       sync.Mutex
	opts     WebhookOptions
	queue    [][]byte
	wake     chan struct{}
	inflight int
	started  bool
	// counts
	delivered, dropped, attempts int
}

// SetWebhooks starts (or, with an empty URL, stops) the fake's data
// webhooks. Webhooks already queued go to the new target.
func (s *Server) SetWebhooks(o WebhookOptions) {
	h := &s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	if o.Attempts <= 0 {
		o.Attempts = 6
	}
	if o.Backoff <= 0 {
		o.Backoff = 100 * time.Millisecond
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	h.opts = o
	if h.started || o.URL == "" {
		return
	}
	h.started = true
	h.wake = make(chan struct{}, 1)
	for range o.Workers {
		go s.deliverWebhooks()
	}
}

// WebhookStats are the fake's webhook counts: delivered (answered 2xx),
// dropped after the last attempt, every attempt, and those queued or in
// flight.
type WebhookStats struct {
	Delivered, Dropped, Attempts, Pending int
}

// WebhookStats returns the webhook counts so far.
func (s *Server) WebhookStats() WebhookStats {
	h := &s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	return WebhookStats{Delivered: h.delivered, Dropped: h.dropped, Attempts: h.attempts, Pending: len(h.queue) + h.inflight}
}

// WaitWebhooks waits until no webhook is queued or in flight, or ctx ends
// (its error then).
func (s *Server) WaitWebhooks(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for s.WebhookStats().Pending > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// emitLocked queues the webhook typ with fields (which it may change).
// s.mu is held: the payload is the state the change left.
func (s *Server) emitLocked(typ, loc string, fields map[string]any) {
	h := &s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.opts.URL == "" {
		return
	}
	fields["type"] = typ
	fields["locationId"] = loc
	fields["webhookId"] = newID()
	fields["timestamp"] = s.opts.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	b, err := json.Marshal(fields)
	if err != nil {
		return
	}
	h.queue = append(h.queue, b)
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// emitContactLocked queues the webhook of contact c (ContactCreate,
// ContactUpdate, …), in the shape of GHL's contact webhooks.
func (s *Server) emitContactLocked(typ string, c *Contact) {
	cfs := []map[string]any{}
	for _, cf := range c.CustomFields {
		cfs = append(cfs, map[string]any{"id": cf.ID, "value": cf.Value})
	}
	f := map[string]any{
		"id": c.ID, "address1": c.Address1, "city": c.City, "state": c.State, "companyName": c.CompanyName,
		"country": c.Country, "source": c.Source, "dateAdded": c.DateAdded.UTC().Format("2006-01-02T15:04:05.000Z"),
		"dnd": c.DND, "email": c.Email, "name": c.Name, "firstName": c.FirstName, "lastName": c.LastName,
		"phone": c.Phone, "postalCode": c.PostalCode, "tags": slices.Concat([]string{}, c.Tags), "website": "",
		"attachments": []any{}, "assignedTo": "", "customFields": cfs,
	}
	if day, err := time.Parse("2006-01-02", c.DateOfBirth); err == nil {
		f["dateOfBirth"] = day.Format("2006-01-02T15:04:05.000Z")
	}
	s.emitLocked(typ, c.LocationID, f)
}

// emitAppointmentLocked queues the webhook of appointment a.
func (s *Server) emitAppointmentLocked(typ string, a *Appointment) {
	users := []string{}
	if a.AssignedUserID != "" {
		users = append(users, a.AssignedUserID)
	}
	s.emitLocked(typ, a.LocationID, map[string]any{"appointment": map[string]any{
		"id": a.ID, "address": a.Address, "title": a.Title, "calendarId": a.CalendarID, "contactId": a.ContactID,
		"groupId": "", "appointmentStatus": a.AppointmentStatus, "assignedUserId": a.AssignedUserID,
		"users": users, "notes": "", "source": "", "startTime": a.StartTime, "endTime": a.EndTime,
		"dateAdded": a.DateAdded.UTC().Format(time.RFC3339), "dateUpdated": a.DateUpdated.UTC().Format(time.RFC3339),
	}})
}

// deliverWebhooks is one delivery worker: it takes queued webhooks until
// the server closes.
func (s *Server) deliverWebhooks() {
	h := &s.hooks
	for {
		h.mu.Lock()
		if len(h.queue) == 0 {
			h.mu.Unlock()
			select {
			case <-s.done:
				return
			case <-h.wake:
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		body := h.queue[0]
		h.queue = h.queue[1:]
		h.inflight++
		opts := h.opts
		if len(h.queue) > 0 {
			select {
			case h.wake <- struct{}{}:
			default:
			}
		}
		h.mu.Unlock()
		ok := s.sendWebhook(opts, body)
		h.mu.Lock()
		h.inflight--
		if ok {
			h.delivered++
		} else {
			h.dropped++
		}
		h.mu.Unlock()
	}
}

// sendWebhook sends one webhook, trying again while it is not answered
// 2xx; it reports whether it was.
func (s *Server) sendWebhook(o WebhookOptions, body []byte) bool {
	sig := base64.StdEncoding.EncodeToString(ed25519.Sign(o.Key, body))
	pause := o.Backoff
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequest(http.MethodPost, o.URL, bytes.NewReader(body))
		if err != nil {
			return false
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-ghl-signature", sig)
		s.hooks.mu.Lock()
		s.hooks.attempts++
		s.hooks.mu.Unlock()
		resp, err := o.Client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return true
			}
		}
		if attempt >= o.Attempts {
			return false
		}
		select {
		case <-s.done:
			return false
		case <-time.After(pause):
		}
		pause *= 2
	}
}

// StaffEditContact plays a user editing contact id in GHL: edit changes
// it, and GHL's ContactUpdate webhook goes out. It reports whether the
// contact exists.
func (s *Server) StaffEditContact(id string, edit func(c *Contact)) (Contact, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.st.contacts[id]
	if c == nil {
		return Contact{}, false
	}
	s.st.unindexContact(c)
	edit(c)
	c.DateUpdated = s.opts.Now()
	s.st.indexContact(c)
	s.changedLocked()
	s.emitContactLocked("ContactUpdate", c)
	return c.clone(), true
}

// StaffCreateContact plays a user (or a form) creating a contact in GHL;
// GHL's ContactCreate webhook goes out.
func (s *Server) StaffCreateContact(c Contact) Contact {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.addLocationLockedIfMissing(c.LocationID)
	c.ID, c.DateAdded, c.DateUpdated = newID(), now, now
	stored := c.clone()
	s.st.insertContact(&stored)
	s.changedLocked()
	s.emitContactLocked("ContactCreate", &stored)
	return stored.clone()
}

// BookAppointment plays a patient booking through GHL (a booking widget,
// a voice agent): the appointment is stored as given (a new id, status
// confirmed unless set) and GHL's AppointmentCreate webhook goes out.
func (s *Server) BookAppointment(a Appointment) Appointment {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	a.ID, a.DateAdded, a.DateUpdated = newID(), now, now
	if a.AppointmentStatus == "" {
		a.AppointmentStatus = defaultAppointmentStatus
	}
	stored := a
	s.st.appointments[a.ID] = &stored
	s.st.apptsByLo[a.LocationID] = append(s.st.apptsByLo[a.LocationID], a.ID)
	s.changedLocked()
	s.emitAppointmentLocked("AppointmentCreate", &stored)
	return stored
}

// StaffEditAppointment plays a user changing appointment id in GHL (a
// cancellation from a text reply, a move); GHL's AppointmentUpdate
// webhook goes out. It reports whether the appointment exists.
func (s *Server) StaffEditAppointment(id string, edit func(a *Appointment)) (Appointment, bool) {
	return s.editAppointment(id, edit, true)
}

// EditAppointmentUnheard plays a user changing appointment id in GHL
// with no webhook delivered (an outage longer than GHL's retries): the
// edit is made, DateUpdated moves, no webhook goes out. It reports
// whether the appointment exists.
func (s *Server) EditAppointmentUnheard(id string, edit func(a *Appointment)) (Appointment, bool) {
	return s.editAppointment(id, edit, false)
}

// editAppointment edits appointment id as a user in GHL does, with its
// AppointmentUpdate webhook when heard.
func (s *Server) editAppointment(id string, edit func(a *Appointment), heard bool) (Appointment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.appointments[id]
	if a == nil {
		return Appointment{}, false
	}
	edit(a)
	a.DateUpdated = s.opts.Now()
	s.changedLocked()
	if heard {
		s.emitAppointmentLocked("AppointmentUpdate", a)
	}
	return *a, true
}

// LoseAppointment removes appointment id behind the app's back (a user
// deleting it with no webhook delivered): no webhook goes out. It reports
// whether the appointment existed.
func (s *Server) LoseAppointment(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.st.appointments[id]
	if a == nil {
		return false
	}
	delete(s.st.appointments, id)
	s.st.apptsByLo[a.LocationID] = slices.DeleteFunc(s.st.apptsByLo[a.LocationID], func(x string) bool { return x == id })
	s.changedLocked()
	return true
}
