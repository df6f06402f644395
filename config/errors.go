package config

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem in a config file, with the position of the offending YAML node so an
// operator can jump straight to it.
type Error struct {
	File   string
	Line   int // 1-based; 0 when the problem has no position
	Column int // 1-based
	Msg    string
}

// Error formats as "file:line:col: msg", the form editors and CI logs recognise.
func (e *Error) Error() string {
	switch {
	case e.File != "" && e.Line > 0 && e.Column == 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	case e.File != "":
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	case e.Line > 0 && e.Column == 0:
		return fmt.Sprintf("%d: %s", e.Line, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Msg)
	}
	return e.Msg
}

// Errors is every problem found in one file, so a single run reports them all instead of
// making the operator fix them one at a time. Parse returns them sorted by position.
type Errors []*Error

// Error joins the problems one per line.
func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap exposes the individual errors to errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortErrors orders by position and drops exact duplicates (the same node can be reached twice
// through YAML aliases).
func sortErrors(es Errors) Errors {
	slices.SortStableFunc(es, func(a, b *Error) int {
		if c := cmp.Compare(a.Line, b.Line); c != 0 {
			return c
		}
		return cmp.Compare(a.Column, b.Column)
	})
	return slices.CompactFunc(es, func(a, b *Error) bool { return *a == *b })
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlSyntaxError converts a yaml.v3 parse error ("yaml: line 3: did not find expected key") into
// an Error; yaml.v3 gives no column for these.
func yamlSyntaxError(err error, file string) *Error {
	msg := err.Error()
	e := &Error{File: file}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	e.Msg = "invalid YAML: " + msg
	return e
}
