package vault

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name  string
		input string
		ok    bool
	}{
		{"simple", "prod", true},
		{"digits first", "0day", true},
		{"dots dashes underscores", "a.b-c_d", true},
		{"single char", "a", true},
		{"max length", strings.Repeat("a", 63), true},
		{"too long", strings.Repeat("a", 64), false},
		{"empty", "", false},
		{"upper case", "Prod", false},
		{"leading dot", ".hidden", false},
		{"dot dot", "..", false},
		{"leading dash", "-x", false},
		{"leading underscore", "_x", false},
		{"slash", "a/b", false},
		{"space", "a b", false},
		{"nul", "a\x00b", false},
		{"unicode", "prød", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName(tt.input)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateName(%q) = %v, want ok=%v", tt.input, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestValidateEnv(t *testing.T) {
	tests := []struct {
		name  string
		input string
		ok    bool
	}{
		{"typical", "OPENAI_API_KEY", true},
		{"lower case", "github_token", true},
		{"leading underscore", "_TOKEN", true},
		{"digits after first", "KEY2", true},
		{"max length", strings.Repeat("A", 128), true},
		{"too long", strings.Repeat("A", 129), false},
		{"empty", "", false},
		{"leading digit", "2KEY", false},
		{"dash", "API-KEY", false},
		{"equals", "A=B", false},
		{"space", "A B", false},
		{"PATH", "PATH", false},
		{"HOME", "HOME", false},
		{"LD_PRELOAD", "LD_PRELOAD", false},
		{"LD_LIBRARY_PATH", "LD_LIBRARY_PATH", false},
		{"other loader var", "LD_AUDIT", false},
		{"SSL_CERT_FILE", "SSL_CERT_FILE", false},
		{"CA bundle", "REQUESTS_CA_BUNDLE", false},
		{"proxy var lower case", "https_proxy", false},
		{"KEYGATE prefix", "KEYGATE_SOCKET", false},
		{"KEYGATE prefix lower", "keygate_x", false},
		{"LD prefix only in middle", "OLD_KEY", true},
		{"PATH as a substring", "MY_PATH_TOKEN", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateEnv(tt.input)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateEnv(%q) = %v, want ok=%v", tt.input, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestCredentialValidate(t *testing.T) {
	valid := func() Credential {
		return Credential{Vault: "prod", Name: "openai", Env: "OPENAI_API_KEY", Domains: []string{"api.openai.com"}}
	}
	tests := []struct {
		name    string
		mutate  func(c *Credential)
		wantErr string // substring of the error; "" means valid
	}{
		{"valid", func(c *Credential) {}, ""},
		{"wildcard domains", func(c *Credential) { c.Domains = []string{"*.example.com", "**.example.org"} }, ""},
		{"bearer header", func(c *Credential) { c.Header = "Authorization: Bearer {}" }, ""},
		{"bare header", func(c *Credential) { c.Header = "X-Api-Key:{}" }, ""},
		{"bad vault", func(c *Credential) { c.Vault = "Prod" }, `vault "Prod": invalid argument`},
		{"bad name", func(c *Credential) { c.Name = "" }, `vault "prod": credential "": invalid argument`},
		{"bad env", func(c *Credential) { c.Env = "PATH" }, `credential "openai": env "PATH": invalid argument`},
		{"no domains", func(c *Credential) { c.Domains = nil }, "at least one domain"},
		{"bad domain", func(c *Credential) { c.Domains = []string{"api.openai.com", "*.com"} }, `"*.com"`},
		{"empty domain", func(c *Credential) { c.Domains = []string{""} }, "invalid domain"},
		{"header without colon", func(c *Credential) { c.Header = "Bearer {}" }, "Name: text with {}"},
		{"header without placeholder", func(c *Credential) { c.Header = "Authorization: Bearer" }, "exactly once"},
		{"header two placeholders", func(c *Credential) { c.Header = "X-Key: {}{}" }, "exactly once"},
		{"header bad name", func(c *Credential) { c.Header = "X Key: {}" }, "want"},
		{"header empty name", func(c *Credential) { c.Header = ": {}" }, "want"},
		{"header CRLF", func(c *Credential) { c.Header = "X-Key: {}\r\nEvil: 1" }, "control character"},
		{"header Host", func(c *Credential) { c.Header = "host: {}" }, "set by the proxy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}
