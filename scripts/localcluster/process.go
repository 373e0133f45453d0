package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// childSpec describes one process `up` supervises.
type childSpec struct {
	Name string   // short name, used for DIR/logs/<Name>.log and in messages
	Path string   // executable to run
	Args []string // full argv, including argv[0]
	Env  []string // environment; nil inherits up's
}

// child is a running (or exited) supervised process.
type child struct {
	Name    string
	LogPath string

	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // the result of cmd.Wait; read only after done is closed
}

// startChild starts spec with stdout and stderr appended to
// logDir/<name>.log, in a process group of its own (so a Ctrl-C at a terminal
// reaches `up` only, which then stops the children in order) and with
// SIGKILL as its parent-death signal (so nothing outlives an `up` that is
// killed outright).
//
// Linux sends the parent-death signal when the OS *thread* that forked the
// child exits, not the process: callers must start children from a goroutine
// locked to its thread for the life of `up` (runUp does this).
func startChild(spec childSpec, logDir string) (*child, error) {
	logPath := filepath.Join(logDir, spec.Name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	// The child gets its own copy of the descriptor; ours is not needed.
	defer f.Close()

	cmd := &exec.Cmd{
		Path:   spec.Path,
		Args:   spec.Args,
		Env:    spec.Env,
		Stdout: f,
		Stderr: f,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid:   true,
			Pdeathsig: syscall.SIGKILL,
		},
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	c := &child{Name: spec.Name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// Done is closed when the process has exited.
func (c *child) Done() <-chan struct{} { return c.done }

// ExitStatus describes how the process ended, e.g. "exit status 1" or
// "signal: killed". Call it only after Done is closed.
func (c *child) ExitStatus() string {
	if c.err == nil {
		return "exit status 0"
	}
	return c.err.Error()
}

// Stop sends SIGTERM to the child's process group, waits up to grace for it
// to exit, then sends SIGKILL and waits for the process to be reaped. It is a
// no-op for a child that has already exited.
func (c *child) Stop(grace time.Duration) {
	select {
	case <-c.done:
		return
	default:
	}
	// Setpgid: the process group id is the child's pid.
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.done:
		return
	case <-timer.C:
	}
	fmt.Fprintf(os.Stderr, "localcluster: %s did not stop within %s, killing it\n", c.Name, grace)
	c.Kill()
	<-c.done
}

// Kill sends SIGKILL to the child's process group, unless the child has
// already exited. It does not wait.
func (c *child) Kill() {
	select {
	case <-c.done:
	default:
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// LogTail returns up to the last n lines of the child's log file, or a note
// saying why it could not be read.
func (c *child) LogTail(n int) string {
	const maxBytes = 64 << 10 // enough for n long lines
	f, err := os.Open(c.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", c.LogPath, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > maxBytes {
		if _, err := f.Seek(-maxBytes, io.SeekEnd); err != nil {
			return fmt.Sprintf("(cannot read %s: %v)", c.LogPath, err)
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", c.LogPath, err)
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// childExitedError reports a supervised process that exited on its own.
type childExitedError struct{ Child *child }

func (e *childExitedError) Error() string {
	return fmt.Sprintf("%s exited unexpectedly (%s)", e.Child.Name, e.Child.ExitStatus())
}

// asChildExited returns the child behind err, if err reports one exiting.
func asChildExited(err error) (*child, bool) {
	var ce *childExitedError
	if errors.As(err, &ce) {
		return ce.Child, true
	}
	return nil, false
}
