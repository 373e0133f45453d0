/**
 * The review request both of its paths carry (plugins/review/fanout.ts sends it; the Matrix
 * bridge, plugins/matrix/bridge.ts, recognises it in a room): the custom content key of the
 * Matrix notice and the inbox id that makes the two paths one delivery.
 */

/** The custom content key of a review-request notice (Java package naming, as the Matrix spec asks of custom keys). */
export const REVIEW_REQUEST_KEY = 'dev.agentsmith.review_request';

/** The inbox id of the review request for event `eventId`: the same on both paths, so it is delivered once. */
export function reviewRequestId(eventId: string): string {
  return `review-request:${eventId}`;
}
