package svcmain

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// SharedFlags are the flags every service binary has (Command without
// flags of its own), as --help shows them for the service name.
func SharedFlags(name string) *pflag.FlagSet {
	return Command(name, nil, nil).Flags()
}

// OwnFlags are the flags of a service binary's command c beyond
// SharedFlags.
func OwnFlags(c *cobra.Command) *pflag.FlagSet {
	shared := SharedFlags(c.Name())
	own := pflag.NewFlagSet(c.Name(), pflag.ContinueOnError)
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if shared.Lookup(f.Name) == nil && f.Name != "help" && f.Name != "version" {
			own.AddFlag(f)
		}
	})
	return own
}

// EnvTable is a Markdown table of Env: each variable, the flag it is the
// default of and the binaries that read it.
func EnvTable() string {
	var b strings.Builder
	b.WriteString("| variable | flag | read by |\n|---|---|---|\n")
	for _, v := range Env() {
		flag := ""
		if v.Flag != "" {
			flag = "`" + v.Flag + "`"
		}
		by := strings.Join(v.Binaries, ", ")
		if containsAll(v.Binaries, Services) {
			by = strings.Replace(by, strings.Join(Services, ", "), "the five services", 1)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, flag, by)
	}
	return b.String()
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}
