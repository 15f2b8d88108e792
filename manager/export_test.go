package manager

import "github.com/chatfleet/chatfleet/protocol"

// SetTestHookServe installs a hook that runs before each job is served.
// Call it before any worker starts (TestMain), never concurrently.
func SetTestHookServe(f func(*protocol.Job)) { testHookServe = f }
