/**
 * The REST objects of the GitHub fake (github-api.ts) in GitHub's documented shapes
 * (@octokit/openapi-types components: simple-user, repository, pull-request-simple), built
 * from the fake's state and the URLs it answers as.
 */
import type { components } from '@octokit/openapi-types';

type Schemas = components['schemas'];

/** The fake's URL bases: `api` (what the client called, e.g. https://api.github.com) and `web` (html_url, e.g. https://github.com). */
export interface FakeUrls {
  api: string;
  web: string;
}

/** A simple-user of `login`. */
export function simpleUserShape(u: FakeUrls, login: string, id: number, type: string): Schemas['simple-user'] {
  const base = u.api;
  const web = u.web;
  return {
    login,
    id,
    node_id: Buffer.from(`04:User${id}`).toString('base64'),
    avatar_url: `https://avatars.github.test/u/${id}?v=4`,
    gravatar_id: '',
    url: `${base}/users/${login}`,
    html_url: `${web}/${login}`,
    followers_url: `${base}/users/${login}/followers`,
    following_url: `${base}/users/${login}/following{/other_user}`,
    gists_url: `${base}/users/${login}/gists{/gist_id}`,
    starred_url: `${base}/users/${login}/starred{/owner}{/repo}`,
    subscriptions_url: `${base}/users/${login}/subscriptions`,
    organizations_url: `${base}/users/${login}/orgs`,
    repos_url: `${base}/users/${login}/repos`,
    events_url: `${base}/users/${login}/events{/privacy}`,
    received_events_url: `${base}/users/${login}/received_events`,
    type,
    site_admin: false,
    user_view_type: 'public',
  };
}

/** A repository `full` (`owner/name`) owned by `owner`; default branch `defaultBranch`. */
export function repositoryShape(u: FakeUrls, full: string, owner: Schemas['simple-user'], defaultBranch = 'main'): Schemas['repository'] {
  const base = u.api;
  const web = u.web;
  const r = `${base}/repos/${full}`;
  const name = full.split('/')[1] ?? full;
  const id = 100 + [...full].reduce((a, c) => a + c.charCodeAt(0), 0);
  return {
    id,
    node_id: Buffer.from(`010:Repository${id}`).toString('base64'),
    name,
    full_name: full,
    license: null,
    forks: 0,
    owner,
    private: false,
    html_url: `${web}/${full}`,
    description: null,
    fork: false,
    url: r,
    archive_url: `${r}/{archive_format}{/ref}`,
    assignees_url: `${r}/assignees{/user}`,
    blobs_url: `${r}/git/blobs{/sha}`,
    branches_url: `${r}/branches{/branch}`,
    collaborators_url: `${r}/collaborators{/collaborator}`,
    comments_url: `${r}/comments{/number}`,
    commits_url: `${r}/commits{/sha}`,
    compare_url: `${r}/compare/{base}...{head}`,
    contents_url: `${r}/contents/{+path}`,
    contributors_url: `${r}/contributors`,
    deployments_url: `${r}/deployments`,
    downloads_url: `${r}/downloads`,
    events_url: `${r}/events`,
    forks_url: `${r}/forks`,
    git_commits_url: `${r}/git/commits{/sha}`,
    git_refs_url: `${r}/git/refs{/sha}`,
    git_tags_url: `${r}/git/tags{/sha}`,
    git_url: `git://github.test/${full}.git`,
    issue_comment_url: `${r}/issues/comments{/number}`,
    issue_events_url: `${r}/issues/events{/number}`,
    issues_url: `${r}/issues{/number}`,
    keys_url: `${r}/keys{/key_id}`,
    labels_url: `${r}/labels{/name}`,
    languages_url: `${r}/languages`,
    merges_url: `${r}/merges`,
    milestones_url: `${r}/milestones{/number}`,
    notifications_url: `${r}/notifications{?since,all,participating}`,
    pulls_url: `${r}/pulls{/number}`,
    releases_url: `${r}/releases{/id}`,
    ssh_url: `git@github.test:${full}.git`,
    stargazers_url: `${r}/stargazers`,
    statuses_url: `${r}/statuses/{sha}`,
    subscribers_url: `${r}/subscribers`,
    subscription_url: `${r}/subscription`,
    tags_url: `${r}/tags`,
    teams_url: `${r}/teams`,
    trees_url: `${r}/git/trees{/sha}`,
    clone_url: `${web}/${full}.git`,
    mirror_url: null,
    hooks_url: `${r}/hooks`,
    svn_url: `${web}/${full}`,
    homepage: null,
    language: 'TypeScript',
    forks_count: 0,
    stargazers_count: 0,
    watchers_count: 0,
    size: 1,
    default_branch: defaultBranch,
    open_issues_count: 0,
    has_issues: true,
    has_projects: false,
    has_wiki: false,
    has_pages: false,
    has_downloads: true,
    archived: false,
    disabled: false,
    visibility: 'public',
    pushed_at: null,
    created_at: null,
    updated_at: null,
    open_issues: 0,
    watchers: 0,
  };
}

/** What a new pull request is made of. */
export interface PullRequestParts {
  repo: string;
  number: number;
  id: number;
  title: string;
  body: string | null;
  author: Schemas['simple-user'];
  owner: Schemas['simple-user'];
  repoObj: Schemas['repository'];
  headRef: string;
  baseRef: string;
  headSha: string;
  baseSha: string;
  /** RFC 3339 creation time. */
  at: string;
  draft: boolean;
}

/** A pull-request-simple, open, from the parts. */
export function pullRequestShape(u: FakeUrls, o: PullRequestParts): Schemas['pull-request-simple'] {
  const { number, id, at, owner, author, repoObj, headRef, baseRef, headSha } = o;
  const web = u.web;
  const r = `${u.api}/repos/${o.repo}`;
  const link = (href: string) => ({ href });
  return {
      url: `${r}/pulls/${number}`,
      id,
      node_id: Buffer.from(`011:PullRequest${id}`).toString('base64'),
      html_url: `${web}/${o.repo}/pull/${number}`,
      diff_url: `${web}/${o.repo}/pull/${number}.diff`,
      patch_url: `${web}/${o.repo}/pull/${number}.patch`,
      issue_url: `${r}/issues/${number}`,
      commits_url: `${r}/pulls/${number}/commits`,
      review_comments_url: `${r}/pulls/${number}/comments`,
      review_comment_url: `${r}/pulls/comments{/number}`,
      comments_url: `${r}/issues/${number}/comments`,
      statuses_url: `${r}/statuses/${headSha}`,
      number,
      state: 'open',
      locked: false,
      title: o.title,
      user: author,
      body: o.body,
      labels: [],
      milestone: null,
      active_lock_reason: null,
      created_at: at,
      updated_at: at,
      closed_at: null,
      merged_at: null,
      merge_commit_sha: null,
      assignee: null,
      assignees: [],
      requested_reviewers: [],
      requested_teams: [],
      head: { label: `${owner.login}:${headRef}`, ref: headRef, repo: repoObj, sha: headSha, user: owner },
      base: { label: `${owner.login}:${baseRef}`, ref: baseRef, repo: repoObj, sha: o.baseSha, user: owner },
      _links: {
        comments: link(`${r}/issues/${number}/comments`),
        commits: link(`${r}/pulls/${number}/commits`),
        statuses: link(`${r}/statuses/${headSha}`),
        html: link(`${web}/${o.repo}/pull/${number}`),
        issue: link(`${r}/issues/${number}`),
        review_comments: link(`${r}/pulls/${number}/comments`),
        review_comment: link(`${r}/pulls/comments{/number}`),
        self: link(`${r}/pulls/${number}`),
      },
      author_association: 'CONTRIBUTOR',
      auto_merge: null,
      draft: o.draft,
  };
}
