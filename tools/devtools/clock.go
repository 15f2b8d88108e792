package devtools

import (
	"context"
	"encoding/json"
	"time"

	"github.com/chatfleet/chatfleet/tools"
)

// Clock tells the time now in a time zone (UTC by default).
func Clock() tools.Tool {
	return tools.Tool{
		Name:        "clock",
		Description: "Returns the current date and time, in RFC 3339, in an IANA time zone (default UTC).",
		Parameters:  json.RawMessage(`{"type":"object","properties":{"time_zone":{"type":"string","description":"e.g. Europe/Paris"}}}`),
		Handler: func(_ context.Context, call tools.Call, out *tools.Output) error {
			var args struct {
				TimeZone string `json:"time_zone"`
			}
			if call.Arguments != "" {
				if err := json.Unmarshal([]byte(call.Arguments), &args); err != nil {
					return &tools.ArgumentError{Msg: `want {"time_zone": "..."}`}
				}
			}
			loc := time.UTC
			if args.TimeZone != "" {
				l, err := time.LoadLocation(args.TimeZone)
				if err != nil {
					return &tools.ArgumentError{Msg: "unknown time zone " + args.TimeZone}
				}
				loc = l
			}
			_, err := out.WriteString(time.Now().In(loc).Format(time.RFC3339))
			return err
		},
	}
}

// All is every example tool.
func All() []tools.Tool { return []tools.Tool{Calculator(), Clock()} }
