import { describe, expect, it } from 'vitest';
import { cut, MAX_SUMMARY_CHARS, mayAnswer, parseAnswer, reactionVerdict, ruleKey, summarize, summary } from './approval-rules.ts';

describe('approval answers', () => {
  it('reads approve/deny words, "always", and skips reply fallbacks', () => {
    expect(parseAnswer('approve')).toEqual({ verdict: 'approve', always: false });
    expect(parseAnswer('Yes!')).toEqual({ verdict: 'approve', always: false });
    expect(parseAnswer('approve always')).toEqual({ verdict: 'approve', always: true });
    expect(parseAnswer('Always approve.')).toEqual({ verdict: 'approve', always: true });
    expect(parseAnswer('yes, always')).toEqual({ verdict: 'approve', always: true });
    expect(parseAnswer('> <@bot:hs> 🔐 testbot asks to run Bash\n\ndeny')).toEqual({ verdict: 'deny', always: false });
    expect(parseAnswer('NO')).toEqual({ verdict: 'deny', always: false });
    // "always" never turns a denial into a rule.
    expect(parseAnswer('no, always')).toEqual({ verdict: 'deny', always: false });
  });

  it('does not read other text as an answer', () => {
    for (const body of ['', 'yesterday it broke', 'noted', 'what does this command do?', 'please approve it later', 'yes, but first run the tests', 'ok', 'yes no', 'always', 'approve\nand then', 'y'.repeat(300), 'nope']) {
      expect(parseAnswer(body), body).toBeUndefined();
    }
  });

  it('reads ✅ 👍 as approve and ❌ 👎 as deny, with variation selectors and skin tones', () => {
    expect(reactionVerdict('✅')).toBe('approve');
    expect(reactionVerdict('👍')).toBe('approve');
    expect(reactionVerdict('👍🏽')).toBe('approve');
    expect(reactionVerdict('✔️')).toBe('approve');
    expect(reactionVerdict('❌')).toBe('deny');
    expect(reactionVerdict('👎🏻')).toBe('deny');
    expect(reactionVerdict('👀')).toBeUndefined();
    expect(reactionVerdict('🎉')).toBeUndefined();
  });

  it('lets only allow-listed users other than the agent answer', () => {
    const approvers = new Set(['@alice:hs', '@bot:hs']);
    expect(mayAnswer('@alice:hs', approvers, '@bot:hs')).toBe(true);
    expect(mayAnswer('@mallory:hs', approvers, '@bot:hs')).toBe(false);
    expect(mayAnswer('@bot:hs', approvers, '@bot:hs')).toBe(false);
  });
});

describe('always rules', () => {
  it('match the same tool and exact input in the same session only', () => {
    const k = ruleKey('s1', 'Bash', { command: 'git push origin fix', description: 'Push the fix' });
    expect(ruleKey('s1', 'Bash', { description: 'push it', command: 'git push origin fix' })).toBe(k); // description is free text
    expect(ruleKey('s1', 'Bash', { command: 'git push origin main' })).not.toBe(k);
    expect(ruleKey('s1', 'Bash', { command: 'git push origin fix; rm -rf /' })).not.toBe(k);
    expect(ruleKey('s2', 'Bash', { command: 'git push origin fix' })).not.toBe(k);
    expect(ruleKey('s1', 'Write', { command: 'git push origin fix' })).not.toBe(k);
    // Key order does not matter; values do.
    expect(ruleKey('s1', 'Edit', { file_path: '/a', new_string: 'x' })).toBe(ruleKey('s1', 'Edit', { new_string: 'x', file_path: '/a' }));
    expect(ruleKey('s1', 'Edit', { file_path: '/a', new_string: 'x' })).not.toBe(ruleKey('s1', 'Edit', { file_path: '/a', new_string: 'y' }));
  });
});

describe('what the room is shown', () => {
  it('shows the command, without URL credentials or control characters, bounded', () => {
    expect(summarize('Bash', { command: 'git push origin --delete old', description: 'x' })).toBe('git push origin --delete old');
    expect(summarize('Bash', { command: 'git clone https://bob:s3cret@git.example.org/x.git' })).toBe('git clone https://git.example.org/x.git');
    expect(summarize('Bash', { command: 'echo \x1b[31mred' })).toBe('echo \\u{1b}[31mred');
    const long = summarize('Bash', { command: 'x'.repeat(5000) });
    expect(long).toHaveLength(MAX_SUMMARY_CHARS);
    expect(long.endsWith('…')).toBe(true);
    expect(summarize('Write', { file_path: '/workspace/a.txt', content: 'hello' })).toBe('/workspace/a.txt\nhello');
    expect(summarize('mcp__x__y', { b: 1, a: 'z' })).toBe('{"a":"z","b":1}');
  });

  it('shows bidi controls and zero-width characters as \\u{..}', () => {
    // "rm -rf / #" hidden behind a right-to-left override and zero-width characters.
    expect(summarize('Bash', { command: 'echo ok\u202e\u2066 # gnp.x\u2069; rm -rf ~\u200b\ufeff' })).toBe('echo ok\\u{202e}\\u{2066} # gnp.x\\u{2069}; rm -rf ~\\u{200b}\\u{feff}');
    expect(summarize('Bash', { command: 'a\u200e\u200fb' })).toBe('a\\u{200e}\\u{200f}b');
  });

  it('shows the input keys the summary does not render, as JSON', () => {
    expect(summarize('Edit', { file_path: '/a', old_string: 'x', new_string: 'y', replace_all: true })).toBe('/a\nreplace: x\ny\n{"replace_all":true}');
    expect(summarize('Bash', { command: 'sleep 9', description: 'wait', run_in_background: true })).toBe('sleep 9\n{"run_in_background":true}');
    expect(summarize('MultiEdit', { file_path: '/a', edits: [{ old_string: 'p', new_string: 'q' }] })).toBe('/a\n{"edits":[{"new_string":"q","old_string":"p"}]}');
    expect(summarize('Bash', { command: 'ls', description: 'list' })).toBe('ls'); // the description is free text
  });

  it('says how much of a cut summary is not shown', () => {
    expect(summary('Bash', { command: 'ls' })).toEqual({ text: 'ls', hidden: 0 });
    const s = summary('Bash', { command: 'x'.repeat(5000) });
    expect(s.text).toHaveLength(MAX_SUMMARY_CHARS);
    expect(s.hidden).toBe(5000 - (MAX_SUMMARY_CHARS - 1));
  });

  it('never cuts a surrogate pair in half', () => {
    expect(cut('ab😀cd', 4)).toBe('ab…');
    expect(cut('abc', 4)).toBe('abc');
  });
});
