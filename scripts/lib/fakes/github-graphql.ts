/**
 * The GitHub fake's GraphQL endpoint (`POST /graphql`): a subset of GitHub's public schema
 * (docs.github.com/en/graphql/reference: objects Repository, PullRequest, User, Ref,
 * PullRequestReviewThread; the mutation createPullRequest), executed by graphql-js, so any
 * query over these types and fields is answered with exactly the fields it selects, and a
 * field the subset lacks is a GraphQL validation error naming it (what to add here).
 *
 * What it serves, and for whom:
 * - The PR watcher's review-thread query (agent-image/src/plugins/github/watcher.ts
 *   THREADS_QUERY): `repository.pullRequest(number).commits(last).reviewThreads(first)`.
 * - `gh pr create` (gh 2.23, Debian bookworm's package, as the agent image ships it),
 *   measured against this fake: `RepositoryInfo` (repository with `viewerPermission`,
 *   `defaultBranchRef`, `parent`, merge settings), `RepositoryNetwork` (`viewer { login }`
 *   and aliased `repository` fields), `PullRequestForBranch` (`pullRequests(headRefName,
 *   states)`), then the `PullRequestCreate` mutation (`createPullRequest(input)
 *   { pullRequest { id url } }`).
 *
 * Errors have GitHub's shape: `{type, path, locations, message}` with `type` NOT_FOUND for
 * a missing repository or node, UNPROCESSABLE for a refused mutation (GitHub's words, e.g.
 * "A pull request already exists for owner:branch."), and the data keeps the rest.
 */
import type { components } from '@octokit/openapi-types';
import { buildSchema, graphql, GraphQLError, GraphQLScalarType, type GraphQLSchema } from 'graphql';

/** The schema subset, in GitHub's names and types (docs.github.com/en/graphql/reference). */
export const GITHUB_SCHEMA_SDL = /* GraphQL */ `
  scalar URI
  scalar DateTime
  scalar GitObjectID
  scalar HTML

  enum PullRequestState { OPEN CLOSED MERGED }
  enum RepositoryPermission { ADMIN MAINTAIN WRITE TRIAGE READ }
  enum OrderDirection { ASC DESC }
  enum IssueOrderField { CREATED_AT UPDATED_AT COMMENTS }
  enum MergeableState { CONFLICTING MERGEABLE UNKNOWN }
  input IssueOrder { field: IssueOrderField!, direction: OrderDirection! }

  interface Node { id: ID! }
  interface Actor { login: String!, url: URI!, avatarUrl(size: Int): URI! }
  interface RepositoryOwner { id: ID!, login: String!, url: URI!, avatarUrl(size: Int): URI! }

  type User implements Node & Actor & RepositoryOwner { id: ID!, databaseId: Int, login: String!, name: String, url: URI!, avatarUrl(size: Int): URI! }
  type Organization implements Node & Actor & RepositoryOwner { id: ID!, databaseId: Int, login: String!, name: String, url: URI!, avatarUrl(size: Int): URI! }
  type Bot implements Node & Actor { id: ID!, databaseId: Int, login: String!, url: URI!, avatarUrl(size: Int): URI! }

  type PageInfo { hasNextPage: Boolean!, hasPreviousPage: Boolean!, startCursor: String, endCursor: String }

  type Commit implements Node { id: ID!, oid: GitObjectID!, abbreviatedOid: String!, committedDate: DateTime!, message: String!, messageHeadline: String! }
  type Ref implements Node { id: ID!, name: String!, prefix: String!, target: Commit }

  type PullRequestCommit implements Node { id: ID!, commit: Commit! }
  type PullRequestCommitConnection { nodes: [PullRequestCommit], totalCount: Int! }

  type PullRequestReviewComment implements Node { id: ID!, databaseId: Int, body: String!, author: Actor, path: String!, url: URI!, createdAt: DateTime! }
  type PullRequestReviewCommentConnection { nodes: [PullRequestReviewComment], totalCount: Int! }
  type PullRequestReviewThread implements Node { id: ID!, isResolved: Boolean!, path: String!, line: Int, comments(first: Int, last: Int, after: String, before: String): PullRequestReviewCommentConnection! }
  type PullRequestReviewThreadConnection { nodes: [PullRequestReviewThread], totalCount: Int! }

  type PullRequest implements Node {
    id: ID!
    databaseId: Int
    number: Int!
    title: String!
    body: String!
    url: URI!
    state: PullRequestState!
    isDraft: Boolean!
    closed: Boolean!
    merged: Boolean!
    createdAt: DateTime!
    updatedAt: DateTime!
    author: Actor
    baseRefName: String!
    headRefName: String!
    headRefOid: GitObjectID!
    baseRepository: Repository
    headRepository: Repository
    headRepositoryOwner: RepositoryOwner
    isCrossRepository: Boolean!
    maintainerCanModify: Boolean!
    mergeable: MergeableState!
    repository: Repository!
    commits(first: Int, last: Int, after: String, before: String): PullRequestCommitConnection!
    reviewThreads(first: Int, last: Int, after: String, before: String): PullRequestReviewThreadConnection!
  }
  type PullRequestConnection { nodes: [PullRequest], totalCount: Int!, pageInfo: PageInfo! }

  type Repository implements Node {
    id: ID!
    databaseId: Int
    name: String!
    nameWithOwner: String!
    owner: RepositoryOwner!
    url: URI!
    description: String
    isPrivate: Boolean!
    isFork: Boolean!
    isArchived: Boolean!
    hasIssuesEnabled: Boolean!
    hasWikiEnabled: Boolean!
    hasProjectsEnabled: Boolean!
    viewerPermission: RepositoryPermission
    defaultBranchRef: Ref
    parent: Repository
    mergeCommitAllowed: Boolean!
    rebaseMergeAllowed: Boolean!
    squashMergeAllowed: Boolean!
    ref(qualifiedName: String!): Ref
    pullRequest(number: Int!): PullRequest
    pullRequests(first: Int, last: Int, after: String, before: String, headRefName: String, baseRefName: String, states: [PullRequestState!], labels: [String!], orderBy: IssueOrder): PullRequestConnection!
  }

  type Query {
    repository(owner: String!, name: String!, followRenames: Boolean): Repository
    viewer: User!
    node(id: ID!): Node
  }

  input CreatePullRequestInput {
    repositoryId: ID!
    baseRefName: String!
    headRefName: String!
    headRepositoryId: ID
    title: String!
    body: String
    draft: Boolean
    maintainerCanModify: Boolean
    clientMutationId: String
  }
  type CreatePullRequestPayload { clientMutationId: String, pullRequest: PullRequest }

  type Mutation {
    createPullRequest(input: CreatePullRequestInput!): CreatePullRequestPayload
  }
`;

/** An error with GitHub's `type` (NOT_FOUND, UNPROCESSABLE, FORBIDDEN), thrown by a resolver. */
export class GitHubGraphQLError extends Error {
  readonly type: string;
  constructor(type: string, message: string) {
    super(message);
    this.type = type;
  }
}

/**
 * The fake's state as the resolvers see it: plain objects in GraphQL's field names, whose
 * function-valued fields take the field's arguments (graphql-js's default resolver calls
 * them with `(args)`). Built by github-api.ts.
 */
export interface GraphQLRoot {
  repository(args: { owner: string; name: string }): unknown;
  viewer(): unknown;
  node(args: { id: string }): unknown;
  createPullRequest(args: { input: CreatePullRequestInput }): unknown;
}

/** CreatePullRequestInput (docs.github.com/en/graphql/reference/input-objects#createpullrequestinput). */
export interface CreatePullRequestInput {
  repositoryId: string;
  baseRefName: string;
  headRefName: string;
  headRepositoryId?: string | null;
  title: string;
  body?: string | null;
  draft?: boolean | null;
  maintainerCanModify?: boolean | null;
  clientMutationId?: string | null;
}

/** A string scalar passed through as is (URI, DateTime, GitObjectID, HTML are strings on the wire). */
const stringScalar = (name: string) => new GraphQLScalarType({ name, serialize: String, parseValue: String });

let schema: GraphQLSchema | undefined;
function githubSchema(): GraphQLSchema {
  if (schema) return schema;
  schema = buildSchema(GITHUB_SCHEMA_SDL);
  for (const name of ['URI', 'DateTime', 'GitObjectID', 'HTML']) {
    const t = schema.getType(name) as GraphQLScalarType;
    const s = stringScalar(name);
    t.serialize = s.serialize;
    t.parseValue = s.parseValue;
    t.parseLiteral = s.parseLiteral;
  }
  return schema;
}

/**
 * Executes one GraphQL request (`{query, variables, operationName}`) against `root`, and
 * returns the response body GitHub would send: `{data}`, `{data, errors}` or `{errors}`,
 * each error `{type?, path?, locations?, message}`.
 */
export async function executeGitHubGraphQL(root: GraphQLRoot, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const source = typeof body.query === 'string' ? body.query : '';
  if (!source) return { errors: [{ message: 'A query attribute must be specified and must be a string.' }] };
  const variables = typeof body.variables === 'object' && body.variables !== null ? (body.variables as Record<string, unknown>) : undefined;
  const operationName = typeof body.operationName === 'string' ? body.operationName : undefined;
  const result = await graphql({ schema: githubSchema(), source, rootValue: root, variableValues: variables, operationName, typeResolver: (value) => (value as { __typename?: string }).__typename });
  const out: Record<string, unknown> = {};
  if (result.data !== undefined) out.data = result.data;
  if (result.errors?.length) out.errors = result.errors.map(githubError);
  return out;
}

function githubError(e: GraphQLError): Record<string, unknown> {
  const original = e.originalError;
  return {
    ...(original instanceof GitHubGraphQLError ? { type: original.type } : {}),
    ...(e.path ? { path: e.path } : {}),
    ...(e.locations ? { locations: e.locations } : {}),
    message: e.message,
  };
}

type Schemas = components['schemas'];
type SimpleUser = Schemas['simple-user'];

/** A pull request as the fake holds it (github-api.ts PullRecord). */
export interface PullState {
  pr: Schemas['pull-request-simple'];
  repo: string;
  comments: Schemas['pull-request-review-comment'][];
  /** Resolution per thread root comment id. */
  resolved: Map<number, boolean>;
  /** RFC 3339 time of the head commit. */
  headCommittedAt: string;
}

/** An Actor / RepositoryOwner object of a REST user (its `type` picks User, Bot or Organization). */
export const actorNode = (u: SimpleUser) => ({
  __typename: u.type === 'Bot' ? 'Bot' : u.type === 'Organization' ? 'Organization' : 'User',
  id: u.node_id,
  databaseId: u.id,
  login: u.login,
  name: null,
  url: u.html_url,
  avatarUrl: () => u.avatar_url,
});

/** A Commit object. */
export const commitNode = (oid: string, committedDate: string, message = '') => ({
  id: Buffer.from(`06:Commit${oid}`).toString('base64'),
  oid,
  abbreviatedOid: oid.slice(0, 7),
  committedDate,
  message,
  messageHeadline: message.split('\n')[0] ?? '',
});

/** `first`/`last` of a connection's arguments applied to `items`. */
export const slice = <T>(items: T[], a: { first?: number | null; last?: number | null }) => (a.last ? items.slice(-a.last) : a.first ? items.slice(0, a.first) : items);

/** A pull request of the fake as its GraphQL PullRequest object. */
export function pullRequestNode(p: PullState, deps: { repository(full: string): unknown; owner(full: string): SimpleUser }): Record<string, unknown> {
  const pr = p.pr;
  const threadComments = (rootId: number) => p.comments.filter((c) => Number(c.id) === rootId || c.in_reply_to_id === rootId);
  const roots = () => p.comments.filter((c) => c.in_reply_to_id === undefined);
  return {
    __typename: 'PullRequest',
    id: pr.node_id,
    databaseId: pr.id,
    number: pr.number,
    title: pr.title,
    body: pr.body ?? '',
    url: pr.html_url,
    state: pr.merged_at ? 'MERGED' : pr.state === 'open' ? 'OPEN' : 'CLOSED',
    isDraft: pr.draft ?? false,
    closed: pr.state !== 'open',
    merged: pr.merged_at !== null,
    createdAt: pr.created_at,
    updatedAt: pr.updated_at,
    author: pr.user ? actorNode(pr.user) : null,
    baseRefName: pr.base.ref,
    headRefName: pr.head.ref,
    headRefOid: pr.head.sha,
    baseRepository: () => deps.repository(p.repo),
    headRepository: () => deps.repository(p.repo),
    headRepositoryOwner: () => actorNode(deps.owner(p.repo)),
    isCrossRepository: false,
    maintainerCanModify: false,
    mergeable: 'MERGEABLE',
    repository: () => deps.repository(p.repo),
    commits: (a: { first?: number; last?: number }) => {
      const nodes = slice([{ id: Buffer.from(`031:PullRequestCommit${pr.id}:${pr.head.sha}`).toString('base64'), commit: commitNode(pr.head.sha, p.headCommittedAt) }], a);
      return { nodes, totalCount: 1 };
    },
    reviewThreads: (a: { first?: number; last?: number }) => {
      const all = roots().map((r) => ({
        id: Buffer.from(`035:PullRequestReviewThread${r.id}`).toString('base64'),
        isResolved: p.resolved.get(Number(r.id)) ?? false,
        path: r.path,
        line: r.line ?? null,
        comments: (ca: { first?: number; last?: number }) => {
          const cs = threadComments(Number(r.id));
          return {
            nodes: slice(cs, ca).map((c) => ({ id: c.node_id, databaseId: Number(c.id), body: c.body, author: c.user ? actorNode(c.user) : null, path: c.path, url: c.html_url, createdAt: c.created_at })),
            totalCount: cs.length,
          };
        },
      }));
      return { nodes: slice(all, a), totalCount: all.length };
    },
  };
}
