package harness

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// which is 100 on every Linux the benchmark targets.
const clockTick = 10 * time.Millisecond

// procCPU returns the CPU time (user + system) process pid has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields after it follow
	// its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc stat format")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc stat format")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc stat format")
	}
	return time.Duration(ut+st) * clockTick, nil
}

// selfCPU returns the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procRSS returns the resident set size of process pid, in bytes
// (VmRSS in /proc/<pid>/status).
func procRSS(pid int) (int64, error) { return procStatusBytes(pid, "VmRSS:") }

// procPeakRSS returns the peak resident set size of process pid (VmHWM),
// since it started or since its peak was reset through clear_refs.
func procPeakRSS(pid int) (int64, error) { return procStatusBytes(pid, "VmHWM:") }

// resetPeakRSS resets process pid's peak RSS (VmHWM) to its RSS now.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// procStatusBytes reads a "<field> <n> kB" line of /proc/<pid>/status.
func procStatusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, err
				}
				return kb << 10, nil
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", strings.TrimSuffix(field, ":"), pid)
}

// cpuMeter measures the CPU time of processes over an interval. A
// process that has exited keeps the last value read for it.
type cpuMeter struct {
	start time.Time
	procs map[string][]int      // group name → pids
	base  map[int]time.Duration // pid → CPU at start
	last  map[int]time.Duration // pid → CPU when last read
	self  time.Duration         // this process's CPU at start
}

// startCPU starts measuring groups of processes (e.g. "workers", "nats")
// and this process ("bench").
func startCPU(groups map[string][]int) *cpuMeter {
	m := &cpuMeter{start: time.Now(), procs: groups, base: map[int]time.Duration{}, last: map[int]time.Duration{}, self: selfCPU()}
	for _, pids := range groups {
		for _, pid := range pids {
			c, _ := procCPU(pid)
			m.base[pid], m.last[pid] = c, c
		}
	}
	return m
}

// CPU is the CPU time used during a measurement, by process group, in
// seconds, and as cores busy on average.
type CPU struct {
	WallS  float64            `json:"wall_s"`
	CPUS   map[string]float64 `json:"cpu_s"`
	Cores  map[string]float64 `json:"cores"`
	TotalS float64            `json:"total_cpu_s"`
}

// stop returns the CPU used since start; it may be called more than once.
func (m *cpuMeter) stop() CPU {
	wall := time.Since(m.start)
	out := CPU{WallS: round3(wall.Seconds()), CPUS: map[string]float64{}, Cores: map[string]float64{}}
	add := func(g string, d time.Duration) {
		out.CPUS[g] = round3(d.Seconds())
		out.Cores[g] = round3(d.Seconds() / wall.Seconds())
		out.TotalS += d.Seconds()
	}
	for g, pids := range m.procs {
		var c time.Duration
		for _, pid := range pids {
			if v, err := procCPU(pid); err == nil {
				m.last[pid] = v
			}
			c += m.last[pid] - m.base[pid]
		}
		add(g, c)
	}
	add("bench", selfCPU()-m.self)
	out.TotalS = round3(out.TotalS)
	return out
}

// perJob is CPU microseconds per job by process group.
func perJob(c CPU, jobs int) map[string]float64 {
	out := map[string]float64{}
	if jobs == 0 {
		return out
	}
	for k, v := range c.CPUS {
		out[k] = round1(v * 1e6 / float64(jobs))
	}
	out["total"] = round1(c.TotalS * 1e6 / float64(jobs))
	return out
}
