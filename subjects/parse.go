package subjects

import "strings"

// ParseJobs returns the tenant of a jobs subject.
func (n Names) ParseJobs(subject string) (tenant string, err error) {
	toks, err := n.split(subject, "jobs", 1)
	if err != nil {
		return "", err
	}
	return toks[0], nil
}

// ParseReply returns the tenant and request ID of a reply subject.
func (n Names) ParseReply(subject string) (tenant, id string, err error) {
	toks, err := n.split(subject, "reply", 2)
	if err != nil {
		return "", "", err
	}
	return toks[0], toks[1], nil
}

// ParseReplyWrite returns the tenant and request ID of a ReplyWrite subject.
func (n Names) ParseReplyWrite(subject string) (tenant, id string, err error) {
	toks, err := n.split(subject, "write", 2)
	if err != nil {
		return "", "", err
	}
	return toks[0], toks[1], nil
}

// ParseGen returns the tenant and generation ID of a generation subject.
func (n Names) ParseGen(subject string) (tenant, gen string, err error) {
	toks, err := n.split(subject, "gen", 2)
	if err != nil {
		return "", "", err
	}
	return toks[0], toks[1], nil
}

// ParseControl returns the worker ID of a control subject.
func (n Names) ParseControl(subject string) (worker string, err error) {
	toks, err := n.split(subject, "ctl", 1)
	if err != nil {
		return "", err
	}
	return toks[0], nil
}

// ParseRequestKey returns the tenant and request ID of a RequestKey.
func (n Names) ParseRequestKey(key string) (tenant, id string, err error) {
	tenant, id, ok := strings.Cut(key, ".")
	if !ok {
		return "", "", &NameError{Field: "key", Value: key, Reason: "want <tenant>.<id>"}
	}
	if err := ValidName("tenant", tenant); err != nil {
		return "", "", err
	}
	if err := ValidName("id", id); err != nil {
		return "", "", err
	}
	return tenant, id, nil
}

// split checks subject is <prefix>.<kind>.<want names> and returns the names.
func (n Names) split(subject, kind string, want int) ([]string, error) {
	head := n.prefix + "." + kind + "."
	rest, ok := strings.CutPrefix(subject, head)
	if !ok {
		return nil, &NameError{Field: "subject", Value: subject, Reason: "want prefix " + head}
	}
	toks := strings.Split(rest, ".")
	if len(toks) != want {
		return nil, &NameError{Field: "subject", Value: subject, Reason: "wrong number of tokens after " + head}
	}
	fields := [...]string{"tenant", "id"}
	if kind == "ctl" {
		fields[0] = "worker"
	}
	if kind == "gen" {
		fields[1] = "gen"
	}
	for i, t := range toks {
		if err := ValidName(fields[i], t); err != nil {
			return nil, err
		}
	}
	return toks, nil
}

// ParseQueue returns the tenant and priority ("high", "normal" or "low")
// of a jobs subject: Jobs (normal) or PriorityJobs.
func (n Names) ParseQueue(subject string) (tenant, priority string, err error) {
	if tenant, err := n.ParseJobs(subject); err == nil {
		return tenant, "normal", nil
	}
	toks, err := n.split(subject, "pjobs", 2)
	if err != nil {
		return "", "", err
	}
	if toks[1] != "high" && toks[1] != "low" {
		return "", "", &NameError{Field: "priority", Value: toks[1], Reason: "want high or low"}
	}
	return toks[0], toks[1], nil
}

// ParseQueued returns the job subject a QueuedJobs announcement is about.
func (n Names) ParseQueued(subject string) (jobSubject string, ok bool) {
	return strings.CutPrefix(subject, n.prefix+".queued.")
}
