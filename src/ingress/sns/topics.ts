/**
 * The topic allow-list (`sns.topics`): without it, anyone with an AWS account could subscribe the
 * relay to their own topic and send validly signed messages. Globs as in IAM ARNs: `*` is any run
 * of characters (":" included), `?` one character; everything else is literal. An empty list allows
 * every topic (the config loader permits that only in dry-run).
 */
export function compileTopicAllowList(globs: readonly string[]): (topicArn: string) => boolean {
  if (globs.length === 0) return () => true;
  const source = globs.map(globToRegExpSource).join('|');
  const re = new RegExp(`^(?:${source})$`);
  return (topicArn) => re.test(topicArn);
}

function globToRegExpSource(glob: string): string {
  let out = '';
  for (const ch of glob) {
    if (ch === '*') out += '.*';
    else if (ch === '?') out += '.';
    else out += ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return out;
}
