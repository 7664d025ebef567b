// Command healthcheck is the container health check of ghlsync's image,
// which has no shell, curl or wget: it GETs a URL, such as a process's
// /healthz, and exits 0 when the answer is 2xx and 1 otherwise; 2 for bad
// input.
//
//	healthcheck [--timeout 5s] http://127.0.0.1:8080/healthz
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/ghlsync/ghlsync/internal/cli"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stderr))
}

const synopsis = `usage: healthcheck [--timeout 5s] URL

GETs URL, such as a process's /healthz: exit status 0 when the answer is
2xx, 1 otherwise (and the answer on stderr), 2 for bad input.`

func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := cli.NewFlagSet("healthcheck")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the answer")
	pos, err := cli.ParseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		cli.Help(stderr, synopsis, fs, nil)
		return cli.ExitOK
	}
	if err == nil {
		err = cli.WantArgs(fs, pos, "URL")
	}
	if err == nil && *timeout <= 0 {
		err = cli.UsageHelp("healthcheck", "--timeout must be positive")
	}
	if err != nil {
		return cli.Exit(stderr, "healthcheck", err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pos[0], nil)
	if err != nil {
		return cli.Exit(stderr, "healthcheck", cli.Usage(err))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return cli.Exit(stderr, "healthcheck", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return cli.Exit(stderr, "healthcheck", fmt.Errorf("%s: %s", resp.Status, body))
	}
	return cli.ExitOK
}
