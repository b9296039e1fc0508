// zod/mini carries no messages of its own ("Invalid input" for everything); load zod's
// English ones once, for every schema labctl has (lab files and image recipes).
import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

config(en());
