// Amazon SNS's documented limits, and the largest HTTP(S) delivery they allow. SNS counts any 4xx
// as delivered and never retries it: a legitimate envelope answered 413 is a page lost for good,
// so the body limit must admit the largest envelope SNS can send, whatever its characters.

/**
 * The most a Message and its MessageAttributes may weigh together, in UTF-8 bytes, on a topic
 * with HTTP(S) subscriptions.
 * - Publish, Message: "messages must be UTF-8 encoded strings and at most 256 KB in size (262,144
 *   bytes, not 262,144 characters)" — https://docs.aws.amazon.com/sns/latest/api/API_Publish.html
 * - MessageAttributeValue: "All parts of the message attribute, including name, type, and value,
 *   are included in the message size restriction" —
 *   https://docs.aws.amazon.com/sns/latest/api/API_MessageAttributeValue.html
 * - A topic's `MaximumMessageSize` can go up to 1 MiB, but "Topics with MaximumMessageSize set
 *   above 256 KiB support Amazon Data Firehose, Amazon SQS, and AWS Lambda subscriptions": not
 *   HTTP(S) — https://docs.aws.amazon.com/sns/latest/dg/large-message-payloads.html
 */
export const SNS_MAX_MESSAGE_BYTES = 262_144;

/**
 * The most bytes one UTF-8 byte of a Message takes once SNS writes it into the envelope's JSON.
 * SNS says only that "outbound notifications are JSON encoded (meaning that the characters will be
 * reescaped for sending)" (Publish, JSON-specific constraints); which characters its encoder
 * escapes is not documented, so this is the bound for any JSON encoder. A JSON string escape is at
 * most 6 bytes per UTF-16 unit (`\u00XX`), and per UTF-8 byte of the character that is:
 * - 1-byte characters (tab, LF, CR and U+0020 to U+007F, DEL included: the control characters
 *   below U+0020 other than those three are not allowed in a Message) → up to 6 bytes each when
 *   written `\uXXXX` (as an HTML-safe encoder writes `<`, `>`, `&`, `'`; `"`, `\`, tab, LF and CR
 *   take 2 as `\"`, `\\`, `\t`, `\n`, `\r`) — the worst case, 6 per byte;
 * - 2-byte characters (U+0080 to U+07FF) → `\uXXXX`, 6 for 2 bytes: 3 per byte;
 * - 3-byte characters (U+0800 to U+FFFF, U+2028 and U+2029 that some encoders always escape) →
 *   6 for 3 bytes: 2 per byte;
 * - 4-byte characters (above U+FFFF) → a surrogate pair `\uD83D\uDE00`, 12 for 4 bytes: 3 per byte.
 * Jackson's defaults (escape `"`, `\` and control characters only) would give at most 2 per byte;
 * nothing documented promises SNS uses them.
 */
export const MAX_JSON_BYTES_PER_MESSAGE_BYTE = 6;

/**
 * Room for everything in the envelope besides the Message and the attributes' data, each field at
 * its longest and every one of its characters at 6 bytes (more than any field needs; letters and
 * digits are never escaped): Type 24 ("SubscriptionConfirmation"), MessageId 36 (a UUID), TopicArn
 * 309 ("arn:" + partition ≤ 10 + ":sns:" + region ≤ 20 + ":" + account 12 + ":" + topic name
 * ≤ 256), Subject 100 (its limit, ASCII), Timestamp 24, SignatureVersion 1, Signature 1,368 (the
 * base64 of a signature by an RSA key of up to 8,192 bits; SNS's are 2,048 bits today: 344),
 * SigningCertURL 112 and UnsubscribeURL 432 (their https://sns.<region>.amazonaws.com[.cn] forms):
 * 2,406 characters, 14,436 bytes; plus the field names, quotes, colons, commas, indentation and
 * the `"MessageAttributes" : { … }` wrapper, under 512 bytes. Rounded up to 16 KiB.
 *
 * Each message attribute's own framing (`"name" : {"Type":"…","Value":"…"},` and its indentation,
 * about 33 bytes) needs no room here: its name (at least 1 byte of `[A-Za-z0-9_.-]`) and the base
 * of its data type (`String`, `Number` or `Binary`: 6 bytes) count toward SNS_MAX_MESSAGE_BYTES
 * but are never escaped, which leaves at least 35 of their 6-bytes-per-byte allowance unused. A
 * Binary value is base64 (4 bytes per 3, `\/` for `/`): under 6 per byte too.
 */
export const SNS_ENVELOPE_OTHER_FIELDS_BYTES = 16_384;

/** The largest envelope SNS can legitimately POST to an HTTP(S) subscription: 1,589,248 bytes. */
export const SNS_MAX_ENVELOPE_BYTES =
  SNS_MAX_MESSAGE_BYTES * MAX_JSON_BYTES_PER_MESSAGE_BYTE + SNS_ENVELOPE_OTHER_FIELDS_BYTES;

/**
 * The default of `server.maxBodyBytes`: 2 MiB, SNS_MAX_ENVELOPE_BYTES and a margin of 496 KiB
 * (about a third) for what the documentation does not say.
 */
export const DEFAULT_MAX_BODY_BYTES = 2_097_152;

/**
 * What to tell the operator at start when `server.maxBodyBytes` cannot take every envelope SNS may
 * send, or null when it can. The figure is the Message size beyond which a Message of characters
 * written `\uXXXX` no longer fits: such a delivery gets 413, which SNS counts as delivered.
 */
export function bodyLimitWarning(maxBodyBytes: number): string | null {
  if (maxBodyBytes >= SNS_MAX_ENVELOPE_BYTES) return null;
  const messageKiB = Math.floor(
    (maxBodyBytes - SNS_ENVELOPE_OTHER_FIELDS_BYTES) / MAX_JSON_BYTES_PER_MESSAGE_BYTE / 1024,
  );
  const what =
    messageKiB > 0
      ? `a Message over ~${messageKiB} KiB made of characters SNS may write as \\uXXXX (6 bytes each)`
      : 'even a small Message made of characters SNS may write as \\uXXXX (6 bytes each)';
  return (
    `The configured server.maxBodyBytes (${maxBodyBytes}) is below the largest envelope SNS can send ` +
    `(${SNS_MAX_ENVELOPE_BYTES} bytes): ${what} would get 413, which SNS counts as delivered, and be ` +
    `lost. Raise it to at least ${SNS_MAX_ENVELOPE_BYTES}, or leave it out for the default (${DEFAULT_MAX_BODY_BYTES}).`
  );
}
