// Package gopool runs short tasks on goroutines that are kept for reuse.
//
// Every job a worker runs starts three goroutines (the handler, the
// generation, the upstream reader) that decode JSON and so grow their
// stacks well past the 8 KiB a new goroutine starts with. Growing copies
// the stack; in a CPU profile of a busy worker that copying was about 8%
// of its time. A goroutine kept for the next task keeps its grown stack.
package gopool

import (
	"context"
	"sync"
	"time"
)

// Pool starts tasks on idle goroutines when there are some, and on new
// goroutines otherwise. Idle goroutines end after a while without work,
// and all of them at Close. The zero value is not usable; use New.
//
// Idle goroutines take tasks in turn, so after a burst most of them stay
// until the load stays below them for the whole idle time: a pool holds at
// most its peak concurrency, which the worker's slots bound.
type Pool struct {
	idle     chan func() // unbuffered: only a goroutine waiting for work takes a task
	stop     chan struct{}
	idleFor  time.Duration
	routines sync.WaitGroup

	mu     sync.Mutex // orders starting a goroutine before Close's Wait
	closed bool
}

// New returns a pool whose goroutines end after idleFor without a task.
func New(idleFor time.Duration) *Pool {
	return &Pool{idle: make(chan func()), stop: make(chan struct{}), idleFor: idleFor}
}

// Go runs task on a goroutine of the pool and reports true, or reports
// false after Close: then task does not run, and the caller deals with
// it. It never blocks. The caller still owns what task does: the pool
// only lends it a goroutine.
func (p *Pool) Go(task func()) bool {
	select {
	case p.idle <- task:
		return true
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.routines.Add(1)
	go p.run(task)
	return true
}

func (p *Pool) run(task func()) {
	defer p.routines.Done()
	idle := time.NewTimer(p.idleFor)
	defer idle.Stop()
	for {
		task()
		task = nil // an idle goroutine must not keep the last job's memory alive
		idle.Reset(p.idleFor)
		select {
		case task = <-p.idle:
		case <-idle.C:
			return
		case <-p.stop:
			return
		}
	}
}

// Close ends the idle goroutines and waits for the busy ones to finish
// their tasks, or for ctx to end (then it returns ctx's error; the tasks go
// on, owned by whoever started them). Safe to call twice.
func (p *Pool) Close(ctx context.Context) error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.stop)
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { // ends when the tasks do; Close stops waiting for it at ctx's end
		p.routines.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
