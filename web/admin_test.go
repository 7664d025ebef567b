package web_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/ghlsync/ghlsync/ghl/ghltest"
	"github.com/ghlsync/ghlsync/internal/testenv"
	"github.com/ghlsync/ghlsync/store/storetest"
	"github.com/ghlsync/ghlsync/web"
)

var secretPage = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "the admin page") })

// publicURL is WEB_PUBLIC_URL in these tests.
const publicURL = "https://ghlsync.example"

func admin(user, password string, log *slog.Logger) func(http.Handler) http.Handler {
	return (&web.Admin{User: user, Password: password, PublicURL: publicURL, Log: log}).Guard()
}

type adminReq struct {
	method     string // GET when empty
	remote     string
	host       string // the public host when empty
	user, pass string // basic auth when either is set
	headers    map[string]string
}

func serve(h http.Handler, target string, a adminReq) *httptest.ResponseRecorder {
	if a.method == "" {
		a.method = http.MethodGet
	}
	req := httptest.NewRequest(a.method, publicURL+target, nil)
	if a.remote != "" {
		req.RemoteAddr = a.remote
	}
	if a.host != "" {
		req.Host = a.host
	}
	if a.user != "" || a.pass != "" {
		req.SetBasicAuth(a.user, a.pass)
	}
	for k, v := range a.headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestAdminBasicAuth(t *testing.T) {
	t.Parallel()
	h := admin("ops", "s3cret", slog.New(slog.DiscardHandler))(secretPage)
	for _, tc := range []struct {
		name string
		req  adminReq
		want int
	}{
		{"no credentials", adminReq{remote: "203.0.113.9:4000"}, http.StatusUnauthorized},
		{"no credentials on loopback", adminReq{remote: "127.0.0.1:4000"}, http.StatusUnauthorized},
		{"wrong password", adminReq{remote: "203.0.113.9:4000", user: "ops", pass: "s3cre"}, http.StatusUnauthorized},
		{"wrong user", adminReq{remote: "203.0.113.9:4000", user: "root", pass: "s3cret"}, http.StatusUnauthorized},
		{"right", adminReq{remote: "203.0.113.9:4000", user: "ops", pass: "s3cret"}, http.StatusOK},
	} {
		rec := serve(h, "/", tc.req)
		if rec.Code != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, rec.Code, tc.want)
		}
		if tc.want == http.StatusUnauthorized {
			if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("%s: WWW-Authenticate %q", tc.name, rec.Header().Get("WWW-Authenticate"))
			}
			if strings.Contains(rec.Body.String(), "the admin page") {
				t.Errorf("%s: the page was served", tc.name)
			}
		}
	}
}

func TestAdminPasswordOnly(t *testing.T) {
	t.Parallel()
	h := admin("", "s3cret", slog.New(slog.DiscardHandler))(secretPage)
	if rec := serve(h, "/", adminReq{remote: "203.0.113.9:4000", user: "anyone", pass: "s3cret"}); rec.Code != http.StatusOK {
		t.Errorf("any user with the password: %d", rec.Code)
	}
	if rec := serve(h, "/", adminReq{remote: "203.0.113.9:4000", user: "anyone", pass: "nope"}); rec.Code != http.StatusUnauthorized {
		t.Errorf("a wrong password: %d", rec.Code)
	}
}

func TestAdminWithoutPasswordIsLoopbackOnly(t *testing.T) {
	t.Parallel()
	logs := &testenv.Buffer{}
	h := admin("", "", slog.New(slog.NewTextHandler(logs, nil)))(secretPage)
	if !strings.Contains(logs.String(), "WEB_ADMIN_PASSWORD") || !strings.Contains(logs.String(), "loopback") {
		t.Errorf("start-up does not say the admin pages are loopback only:\n%s", logs)
	}
	for _, tc := range []struct {
		name string
		req  adminReq
		want int
	}{
		{"IPv4 loopback", adminReq{remote: "127.0.0.1:4000"}, http.StatusOK},
		{"other IPv4 loopback", adminReq{remote: "127.8.9.10:4000"}, http.StatusOK},
		{"IPv6 loopback", adminReq{remote: "[::1]:4000"}, http.StatusOK},
		{"IPv4-mapped loopback", adminReq{remote: "[::ffff:127.0.0.1]:4000"}, http.StatusOK},
		{"remote", adminReq{remote: "203.0.113.9:4000"}, http.StatusForbidden},
		{"private network", adminReq{remote: "10.0.0.5:4000"}, http.StatusForbidden},
		{"remote claiming loopback", adminReq{remote: "203.0.113.9:4000", headers: map[string]string{
			"X-Forwarded-For": "127.0.0.1", "X-Real-Ip": "127.0.0.1", "Forwarded": "for=127.0.0.1"}}, http.StatusForbidden},
		{"remote with credentials", adminReq{remote: "203.0.113.9:4000", user: "admin", pass: "admin"}, http.StatusForbidden},
	} {
		rec := serve(h, "/", tc.req)
		if rec.Code != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, rec.Code, tc.want)
		}
		if tc.want != http.StatusOK && strings.Contains(rec.Body.String(), "the admin page") {
			t.Errorf("%s: the page was served", tc.name)
		}
	}
}

func TestMonitoringQueueAPI(t *testing.T) {
	t.Parallel()
	stack := storetest.NewStack(t, ghltest.Options{})
	opt, err := asynq.ParseRedisURI(stack.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	client := asynq.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	if _, err := client.Enqueue(asynq.NewTask("ghl:test", []byte(`{"location_id":"locA"}`)), asynq.Queue("critical")); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(web.MonitoringPath+"/", admin("ops", "s3cret", slog.New(slog.DiscardHandler))(web.Monitoring(stack.Redis(t))))

	if rec := serve(mux, "/monitoring/api/queues", adminReq{remote: "127.0.0.1:4000"}); rec.Code != http.StatusUnauthorized {
		t.Fatalf("queue API without credentials: %d", rec.Code)
	}
	rec := serve(mux, "/monitoring/api/queues", adminReq{remote: "203.0.113.9:4000", user: "ops", pass: "s3cret"})
	if rec.Code != http.StatusOK {
		t.Fatalf("queue API: %d %s", rec.Code, rec.Body)
	}
	var body struct {
		Queues []struct {
			Queue   string `json:"queue"`
			Pending int    `json:"pending"`
		} `json:"queues"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("queue API answer %s: %v", rec.Body, err)
	}
	if len(body.Queues) != 1 || body.Queues[0].Queue != "critical" || body.Queues[0].Pending != 1 {
		t.Errorf("queues = %+v, want critical with one pending task", body.Queues)
	}
	page := serve(mux, "/monitoring/", adminReq{remote: "203.0.113.9:4000", user: "ops", pass: "s3cret"})
	if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), "<html") {
		t.Errorf("asynqmon page: %d %.200s", page.Code, page.Body)
	}
}
