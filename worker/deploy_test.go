package worker_test

import (
	"os"
	"path/filepath"
)

// deployFile reads a file under deploy/ at the repository root.
func deployFile(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join("..", "deploy", name))
}
