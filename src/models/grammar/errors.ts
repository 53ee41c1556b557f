/** A response format this gateway cannot enforce (the request gets a 400 naming what and where). */
export class FormatError extends Error {}
