// The image capability's own failure: an image that machines or processes still use.
import { EXIT_FAILED, LabctlError } from '../util/errors.js';

/** The operation was refused because the image is in use (by machines or processes). */
export class ImageInUseError extends LabctlError {
  constructor(
    readonly image: string,
    readonly users: string[],
    action: string,
  ) {
    super(`cannot ${action} image ${image}: in use by ${users.join(', ')}`, EXIT_FAILED);
    this.name = 'ImageInUseError';
  }
}
