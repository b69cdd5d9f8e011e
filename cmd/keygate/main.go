// Command keygate is the command line client of keygated.
package main

import (
	"os"

	"github.com/keygate/keygate/pkg/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
