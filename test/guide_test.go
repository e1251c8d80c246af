package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestProductionGuideCommandsExist: every `premiscale` command line in
// docs/production.md and the README's shell blocks names commands and
// flags the binary has (run with --help, which parses every flag and
// resolves every subcommand), and every whole config file in the guide
// passes `premiscale --validate`. A renamed command, flag or config key
// fails here instead of in an operator's terminal.
func TestProductionGuideCommandsExist(t *testing.T) {
	commands := 0
	for _, doc := range []string{"../docs/production.md", "../README.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, block := range fencedBlocks(string(b), "sh") {
			for _, line := range shellLines(block) {
				args := shellWords(line)
				if len(args) == 0 || args[0] != "premiscale" {
					continue
				}
				commands++
				args = dropConfigFlag(args[1:])
				out, err := exec.Command(premiscaleBin, append(args, "--help")...).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "Usage:") {
					t.Errorf("%s: %q: %v\n%s", filepath.Base(doc), line, err, out)
				}
			}
		}
		configs := 0
		for _, block := range fencedBlocks(string(b), "yaml") {
			if !strings.HasPrefix(block, "# a whole config file") {
				continue
			}
			configs++
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(premiscaleBin, "-c", path, "--validate").CombinedOutput(); err != nil {
				t.Errorf("%s: a whole config file does not validate: %v\n%s", filepath.Base(doc), err, out)
			}
		}
		if doc == "../docs/production.md" && configs == 0 {
			t.Errorf("the guide has no whole config file")
		}
	}
	if commands < 25 {
		t.Errorf("found %d premiscale command lines; the parser lost some", commands)
	}
	t.Logf("%d command lines checked", commands)
}

// fencedBlocks returns the bodies of the ```lang blocks of a Markdown text
// (indented ones in lists included).
func fencedBlocks(md, lang string) []string {
	re := regexp.MustCompile("(?ms)^[ \\t]*```" + lang + "[ \\t]*\\n(.*?)^[ \\t]*```")
	var out []string
	for _, m := range re.FindAllStringSubmatch(md, -1) {
		out = append(out, m[1])
	}
	return out
}

// shellLines joins backslash continuations and drops comments.
func shellLines(block string) []string {
	var out []string
	cur := ""
	for _, l := range strings.Split(block, "\n") {
		l = strings.TrimSpace(l)
		if c, ok := strings.CutSuffix(l, "\\"); ok {
			cur += c + " "
			continue
		}
		cur += l
		if i := strings.Index(cur, " # "); i >= 0 {
			cur = cur[:i]
		}
		if cur = strings.TrimSpace(cur); cur != "" && !strings.HasPrefix(cur, "#") {
			out = append(out, cur)
		}
		cur = ""
	}
	return out
}

// shellWords splits a command line as sh would for plain and quoted words
// (no expansion: "$(date +%F)" stays one word).
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	in := false
	var quote rune
	depth := 0
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
			in = true
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == '(' && strings.HasSuffix(cur.String(), "$"):
			depth++
			cur.WriteRune(r)
		case r == ')' && depth > 0:
			depth--
			cur.WriteRune(r)
		case (r == ' ' || r == '\t') && depth == 0:
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}

// dropConfigFlag removes -c FILE / --config FILE (the files of the docs
// are not here; --help needs none).
func dropConfigFlag(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if (args[i] == "-c" || args[i] == "--config") && i+1 < len(args) {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}
