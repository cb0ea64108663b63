#!/bin/sh
# Extracts the seed's change_plan_template.yml, byte for byte, from the
# runbook seed document (09_Runbook.md): the ```yaml block whose first line
# is "# change_plan_template.yml". The seed's broken UTF-8 (U+FFFD) is kept.
#
#   sh testdata/extract-seed.sh /work/shared/seed/09_Runbook.md > testdata/seed_template.yml
set -eu
LC_ALL=C awk '
  inblock && /^```/ { exit }
  inblock { print; next }
  pending { if ($0 == "# change_plan_template.yml") { inblock = 1; print; next } pending = 0 }
  /^```yaml[ \t\r]*$/ { pending = 1 }
' "${1:?usage: extract-seed.sh path/to/09_Runbook.md}"
