// The image capability: recipes (images/*.yaml) built into read-only btrfs
// subvolumes that systemd-nspawn boots ephemerally.
export { buildImage, resolveRecipe, type BuildImageOptions, type BuildResult, type RendererName } from './build.js';
export {
  ensureImageMounted,
  listImages,
  mountImageByName as mountImage,
  removeImage,
  umountImage,
  type ImageInfo,
} from './manage.js';
export { imageInUseBy, type InUseOptions } from './inuse.js';
export { createContext, planBuild, type BuildContext, type BuildOptions, type Step, type StepIO } from './plan.js';
export { debootstrapCommand, DebootstrapProgress } from './debootstrap.js';
export {
  baseHash,
  effectivePackages,
  listRecipeNames,
  loadRecipe,
  parseRecipe,
  parseSize,
  recipeHash,
  recipeError,
  REQUIRED_PACKAGES,
  withMirror,
  type Recipe,
} from './recipe.js';
export { RECIPES_DIR, imagePaths, type ImagePaths } from './paths.js';
export { resolveDataDir } from '../host/dirs.js';
export { imageState, readMeta, type ImageMeta } from './meta.js';
export { loopsUnder, mountsUnder } from './mount.js';
export { ImageInUseError } from './errors.js';
