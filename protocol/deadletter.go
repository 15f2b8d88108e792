package protocol

// Headers of a dead letter, a job a worker gave up, copied to the
// dead-letter stream (<prefix>.dlq.<tenant>): the message body is the job
// exactly as it was published; `chatfleet dlq` reads these.
const (
	DeadLetterReason     = "Chatfleet-Reason"      // why the job was given up, for people
	DeadLetterCode       = "Chatfleet-Code"        // invalid_request, internal, …
	DeadLetterField      = "Chatfleet-Field"       // the offending job field, if any
	DeadLetterSubject    = "Chatfleet-Subject"     // the jobs subject it was published to
	DeadLetterTenant     = "Chatfleet-Tenant"      // its tenant, when known
	DeadLetterRequest    = "Chatfleet-Request"     // its request ID, when known
	DeadLetterStreamSeq  = "Chatfleet-Stream-Seq"  // its sequence in the jobs stream
	DeadLetterDeliveries = "Chatfleet-Deliveries"  // how often it was delivered
	DeadLetterWorker     = "Chatfleet-Worker"      // the worker that gave it up
	DeadLetterTime       = "Chatfleet-Dead-Letter" // when, RFC 3339
)
