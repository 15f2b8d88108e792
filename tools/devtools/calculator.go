// Package devtools holds the example tools `chatfleet dev` serves: a
// calculator and a clock, small enough to read as examples of
// tools.Serve.
package devtools

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/chatfleet/chatfleet/tools"
)

// Calculator evaluates an arithmetic expression: numbers, + - * / % ^,
// parentheses and unary minus.
func Calculator() tools.Tool {
	return tools.Tool{
		Name:        "calculator",
		Description: "Evaluates an arithmetic expression (+ - * / % ^ and parentheses) and returns its value.",
		Parameters:  json.RawMessage(`{"type":"object","properties":{"expression":{"type":"string","description":"e.g. 17*23"}},"required":["expression"]}`),
		Handler: func(_ context.Context, call tools.Call, out *tools.Output) error {
			var args struct {
				Expression string `json:"expression"`
			}
			if err := json.Unmarshal([]byte(call.Arguments), &args); err != nil || args.Expression == "" {
				return &tools.ArgumentError{Msg: `want {"expression": "..."}`}
			}
			v, err := Evaluate(args.Expression)
			if err != nil {
				return &tools.ArgumentError{Msg: err.Error()}
			}
			_, err = out.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
			return err
		},
	}
}

// Evaluate computes an arithmetic expression.
func Evaluate(expr string) (float64, error) {
	p := &parser{s: expr}
	v, err := p.sum()
	if err != nil {
		return 0, err
	}
	if p.skip(); p.i < len(p.s) {
		return 0, fmt.Errorf("unexpected %q at %d", p.s[p.i], p.i)
	}
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%s has no finite value", expr)
	}
	return v, nil
}

// parser is a recursive-descent parser: sum → product (+|- product)*,
// product → unary (*|/|% unary)*, unary → -unary | power, power →
// primary (^ unary)?, primary → (sum) | number: -2^2 is -4, 2^3^2 is 512.
type parser struct {
	s     string
	i     int
	depth int
}

func (p *parser) skip() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *parser) peek() byte {
	if p.skip(); p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *parser) sum() (float64, error) {
	v, err := p.product()
	for err == nil && (p.peek() == '+' || p.peek() == '-') {
		op := p.s[p.i]
		p.i++
		var r float64
		if r, err = p.product(); op == '+' {
			v += r
		} else {
			v -= r
		}
	}
	return v, err
}

func (p *parser) product() (float64, error) {
	v, err := p.unary()
	for err == nil && strings.IndexByte("*/%", p.peek()) >= 0 {
		op := p.s[p.i]
		p.i++
		var r float64
		if r, err = p.unary(); err != nil {
			break
		}
		switch op {
		case '*':
			v *= r
		case '/':
			v /= r
		default:
			v = math.Mod(v, r)
		}
	}
	return v, err
}

func (p *parser) power() (float64, error) {
	v, err := p.primary()
	if err == nil && p.peek() == '^' {
		p.i++
		var r float64
		if r, err = p.unary(); err == nil {
			v = math.Pow(v, r)
		}
	}
	return v, err
}

func (p *parser) unary() (float64, error) {
	if p.depth++; p.depth > 100 {
		return 0, fmt.Errorf("the expression is nested too deeply")
	}
	defer func() { p.depth-- }()
	if p.peek() == '-' {
		p.i++
		v, err := p.unary()
		return -v, err
	}
	return p.power()
}

func (p *parser) primary() (float64, error) {
	switch c := p.peek(); {
	case c == '(':
		p.i++
		v, err := p.sum()
		if err == nil && p.peek() != ')' {
			return 0, fmt.Errorf("missing ) at %d", p.i)
		}
		p.i++
		return v, err
	default:
		start := p.i
		for p.i < len(p.s) && strings.IndexByte("0123456789.eE", p.s[p.i]) >= 0 {
			p.i++
		}
		v, err := strconv.ParseFloat(p.s[start:p.i], 64)
		if err != nil {
			if p.i == start && p.i < len(p.s) {
				return 0, fmt.Errorf("unexpected %q at %d", p.s[p.i], p.i)
			}
			return 0, fmt.Errorf("not a number at %d", start)
		}
		return v, nil
	}
}
