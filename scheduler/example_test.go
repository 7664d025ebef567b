package scheduler_test

import (
	"fmt"
	"time"

	"github.com/ghlsync/ghlsync/scheduler"
)

// A slot's task id names the schedule and the slot's Unix time: every
// replica that enqueues the slot uses the same id, and Redis keeps one.
func ExampleTaskID() {
	slot := time.Date(2024, 11, 29, 4, 40, 0, 0, time.UTC)
	fmt.Println(scheduler.TaskID("token-refresh", slot))
	// Output: sched:token-refresh:1732855200
}

// ParseSpec takes what `scheduler set` takes: --every, or --cron with an
// optional --tz or CRON_TZ= prefix.
func ExampleParseSpec() {
	for _, in := range [][3]string{
		{"30s", "", ""},
		{"", "CRON_TZ=Europe/Berlin 0 3 * * *", ""},
		{"", "0 3 * * *", "America/New_York"},
		{"0s", "", ""},
		{"", "61 * * * *", ""},
	} {
		sp, err := scheduler.ParseSpec(in[0], in[1], in[2])
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println(sp)
	}
	// Output:
	// every 30s
	// cron 0 3 * * * (Europe/Berlin)
	// cron 0 3 * * * (America/New_York)
	// error: bad schedule: interval 0s is not positive
	// error: bad schedule: cron "61 * * * *": end of range (61) above maximum (59): 61
}
