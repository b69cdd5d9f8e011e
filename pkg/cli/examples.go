package cli

// examples are printed after a command's flags by --help.
var examples = map[string]string{
	"vault create":  "keygate vault create prod",
	"vault list":    "keygate vault list --json",
	"vault archive": "keygate vault archive prod   # purges every secret in it; audit records stay",
	"cred add": `keygate cred add prod openai --env OPENAI_API_KEY --domain api.openai.com < key.txt
  keygate cred add prod gh --env GH_TOKEN --domain api.github.com --domain github.com \
      --placeholder-prefix ghp_ --secret-file token.txt
  keygate cred add prod maps --env MAPS_KEY --domain '*.maps.example.com' --query < key.txt
  keygate cred add prod sentry --env SENTRY_AUTH_TOKEN --domain sentry.io \
      --header 'Authorization: Bearer {}' < token.txt`,
	"cred rotate": "keygate cred rotate prod openai < new-key.txt   # running sandboxes use it on their next request",
	"cred rm":     "keygate cred rm prod openai",
	"cred list":   "keygate cred list prod --json",
	"run": `keygate run --vault prod -- python3 agent.py
  keygate run --vault prod --allow pypi.org --allow files.pythonhosted.org -- pip install requests
  keygate run --vault prod --passthrough updates.pinned.example -- ./agent   # a client that pins its certificate
  keygate run --runtime runsc --vault prod -- curl https://api.openai.com/v1/models`,
	"sandbox list": "keygate sandbox list --json",
	"sandbox create": `id=$(keygate sandbox create --vault prod --allow pypi.org)
  keygate sandbox exec "$id" -- python3 agent.py
  keygate sandbox rm "$id"`,
	"sandbox exec": "keygate sandbox exec 1c36e397 -- curl -sS https://api.openai.com/v1/models",
	"sandbox rm":   "keygate sandbox rm 1c36e397",
	"audit": `keygate audit --vault prod --since 24h
  keygate audit --kind request.deny --json`,
	"status":       "keygate status --json",
	"audit verify": "keygate audit verify   # exit 1 and the first bad record if the chain is broken",
	"schedule create": `keygate schedule create nightly --cron '0 3 * * *' --timezone Europe/Berlin --vault prod -- ./report.sh
  keygate schedule create ping --cron '@every 30s' --vault prod --timeout 10s -- curl -sS https://api.openai.com/v1/models
  keygate schedule create sync --cron '*/15 * * * * *' --vault gh --allow pypi.org --max-concurrent 2 -- python3 sync.py`,
	"schedule list":    "keygate schedule list   # STATE is active, paused or failing (the last run could not start)",
	"schedule show":    "keygate schedule show nightly --json",
	"schedule pause":   "keygate schedule pause nightly   # no runs at due times until resumed; runs in progress go on",
	"schedule resume":  "keygate schedule resume nightly   # runs again from the next due time; none are caught up",
	"schedule rm":      "keygate schedule rm nightly   # kills its runs in progress and drops its history",
	"schedule run-now": "keygate schedule run-now nightly",
	"schedule runs": `keygate schedule runs nightly --limit 5
  keygate schedule runs nightly --output   # the newest run's stdout and stderr`,
}
