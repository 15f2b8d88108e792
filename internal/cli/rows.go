package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
)

// printRows prints a listing: a JSON object a line with asJSON, else empty
// when there are no rows, else a table of header and a line a row (tab
// separated, as line writes it).
func printRows[T any](io IO, rows []T, asJSON bool, empty, header string, line func(T) string) error {
	if asJSON {
		enc := json.NewEncoder(io.Out)
		for _, r := range rows {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	if len(rows) == 0 {
		fmt.Fprintln(io.Out, empty)
		return nil
	}
	tw := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, line(r))
	}
	return tw.Flush()
}
