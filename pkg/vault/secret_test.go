package vault

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
)

const formatTestSecret = "sk-live-FMT-0123456789abcdef"

func TestSecretFormatting(t *testing.T) {
	s := NewSecret([]byte(formatTestSecret))
	type holder struct {
		Name string
		S    Secret
		P    *Secret
	}
	h := holder{Name: "openai", S: s, P: &s}

	outputs := map[string]string{
		"String":   s.String(),
		"GoString": s.GoString(),
		"Sprint":   fmt.Sprint(s),
		"Sprintln": fmt.Sprintln(s, &s),
	}
	for _, verb := range []string{"%v", "%s", "%+v", "%#v", "%q", "%x", "%X", "%d", "%10.3s", "%08v"} {
		outputs["value "+verb] = fmt.Sprintf(verb, s)
		outputs["pointer "+verb] = fmt.Sprintf(verb, &s)
		outputs["struct "+verb] = fmt.Sprintf(verb, h)
	}
	outputs["slog text"] = logged(slog.NewTextHandler, s)
	outputs["slog json"] = logged(slog.NewJSONHandler, s)
	raw, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	outputs["json"] = string(raw)

	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			if strings.Contains(out, formatTestSecret) || strings.Contains(out, fmt.Sprintf("%x", formatTestSecret)) {
				t.Fatalf("output leaks the secret (output withheld)")
			}
			if !strings.Contains(out, "[redacted]") {
				t.Errorf("output %q does not say [redacted]", out)
			}
		})
	}
}

// logged writes s through a slog handler, directly and inside a group.
func logged[H slog.Handler](newHandler func(w io.Writer, o *slog.HandlerOptions) H, s Secret) string {
	var buf bytes.Buffer
	log := slog.New(newHandler(&buf, nil))
	log.Info("use", "secret", s)
	log.Info("use", slog.Group("cred", slog.Any("secret", s)))
	log.Info("use", "ptr", &s)
	return buf.String()
}

func TestSecretBytes(t *testing.T) {
	in := []byte(formatTestSecret)
	s := NewSecret(in)
	in[0] = 'X' // the Secret must not alias its input
	got := s.Bytes()
	if string(got) != formatTestSecret {
		t.Fatalf("Bytes() differs from the input (values withheld)")
	}
	got[0] = 'Y' // nor hand out its own storage
	if string(s.Bytes()) != formatTestSecret || s.Len() != len(formatTestSecret) {
		t.Fatalf("Secret changed after its Bytes() copy was modified")
	}
	if (Secret{}).Len() != 0 {
		t.Errorf("zero Secret has non-zero length")
	}
}
