package deploycheck

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strings"
)

// WorkspaceModules are the module directories go.work uses ("cmd/runbook",
// "services/deployer", ...), without the leading "./".
func WorkspaceModules(gowork []byte) []string {
	var out []string
	inUse := false
	sc := bufio.NewScanner(bytes.NewReader(gowork))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		switch {
		case line == "use (":
			inUse = true
		case inUse && line == ")":
			inUse = false
		case inUse && line != "":
			out = append(out, path.Clean(line))
		case strings.HasPrefix(line, "use ") && !strings.HasSuffix(line, "("):
			out = append(out, path.Clean(strings.TrimSpace(strings.TrimPrefix(line, "use "))))
		}
	}
	return out
}

// ClassicBuilderProblems lists what keeps dockerfile from building with
// Docker's classic builder (Debian's docker.io, docker-compose 1.29 without
// DOCKER_BUILDKIT=1) or from caching its module download: BuildKit-only
// syntax (a `# syntax=` directive, RUN --mount, COPY --link or --chmod,
// heredocs), and a workspace module whose go.mod and go.sum are not copied
// before `RUN go mod download` (the download would then miss its
// dependencies). Empty when there is nothing to fix. Line numbers are
// dockerfile's.
func ClassicBuilderProblems(dockerfile []byte, modules []string) []string {
	var out []string
	copied := map[string]bool{}
	download := 0
	sc := bufio.NewScanner(bytes.NewReader(dockerfile))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		lower := strings.ToLower(line)
		switch {
		case strings.HasPrefix(lower, "#") && strings.HasPrefix(strings.ReplaceAll(strings.TrimPrefix(lower, "#"), " ", ""), "syntax="):
			out = append(out, fmt.Sprintf("line %d: %q is a BuildKit parser directive: drop it", n, line))
		case strings.HasPrefix(lower, "#"):
		case strings.Contains(line, "--mount="):
			out = append(out, fmt.Sprintf("line %d: RUN --mount needs BuildKit: drop it", n))
		case strings.HasPrefix(lower, "copy ") && (strings.Contains(line, "--link") || strings.Contains(line, "--chmod")):
			out = append(out, fmt.Sprintf("line %d: COPY --link/--chmod need BuildKit", n))
		case strings.Contains(line, "<<") && (strings.HasPrefix(lower, "run ") || strings.HasPrefix(lower, "copy ")):
			out = append(out, fmt.Sprintf("line %d: heredocs need BuildKit", n))
		case strings.HasPrefix(lower, "copy ") && download == 0:
			for _, f := range strings.Fields(line)[1:] {
				copied[path.Clean(f)] = true
			}
		case strings.HasPrefix(lower, "run go mod download"):
			download = n
		}
	}
	if download == 0 {
		return append(out, "no `RUN go mod download` after the modules' go.mod and go.sum: every build downloads every module")
	}
	for _, m := range modules {
		for _, f := range []string{"go.mod", "go.sum"} {
			if !copied[path.Join(m, f)] {
				out = append(out, fmt.Sprintf("%s/%s (a go.work module) is not copied before `RUN go mod download` (line %d): add COPY %s/go.mod %s/go.sum %s/", m, f, download, m, m, m))
			}
		}
	}
	return out
}
