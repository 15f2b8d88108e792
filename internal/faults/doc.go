// Package faults holds chatfleet's fault-injection tests: a whole fleet
// (JetStream, the test upstream, workers and a publisher, all real and in
// one process) under a fault, and the guarantees checked afterwards: every
// accepted job answered in full, every reply holding its events once and
// in order and ending with exactly one terminal event, no job stranded.
//
// The faults: the only NATS server restarted mid-answer (TestServerRestart),
// the node leading the jobs stream of a 3-node cluster lost
// (TestClusterNodeLoss), one client's connection dropped by the server
// (TestConnectionDrop), and the publisher partitioned one way by a TCP
// proxy so that a request's answer is lost (TestPublisherLostResponse).
//
// The package has no code of its own, only tests, and they are slow: they
// run with the faults build tag.
//
//	go test -race -tags faults ./internal/faults/
//
// Set CHATFLEET_TEST_LOG=1 to see the workers' logs.
package faults
